from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, path

from dashboard import views

app_name = "dashboard"

urlpatterns: list[URLPattern] = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="dashboard/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.overview, name="overview"),
    path("visao-geral/parcial/", views.overview_live, name="overview_live"),
    path("missoes/", views.missions, name="missions"),
    path("missoes/parcial/", views.missions_rows, name="missions_rows"),
    path("missoes/nova/", views.mission_new, name="mission_new"),
    path("missoes/lote/", views.missions_bulk, name="missions_bulk"),
    path("missoes/<int:pk>/", views.mission_detail, name="mission_detail"),
    path("missoes/<int:pk>/parcial/", views.mission_live, name="mission_live"),
    path("missoes/<int:pk>/itens/<int:item_pk>/", views.item_detail, name="item_detail"),
    path("missoes/<int:pk>/cancelar/", views.mission_cancel, name="mission_cancel"),
    path("missoes/<int:pk>/tentar-novamente/", views.mission_retry, name="mission_retry"),
    path("execucao/", views.execution, name="execution"),
    path("execucao/parcial/", views.execution_live, name="execution_live"),
    path("execucao/pausa/", views.execution_pause, name="execution_pause"),
    path("execucao/sites/<str:domain>/retomar/", views.domain_resume, name="domain_resume"),
    path("recursos/", views.resources, name="resources_home"),
    path("recursos/proxies/importar/", views.proxies_import, name="proxies_import"),
    path("recursos/<slug:kind>/", views.resources, name="resources"),
    path("recursos/<slug:kind>/novo/", views.resource_form, name="resource_new"),
    path("recursos/<slug:kind>/lote/", views.resource_bulk, name="resource_bulk"),
    path("recursos/<slug:kind>/<int:pk>/editar/", views.resource_form, name="resource_edit"),
    path("recursos/<slug:kind>/<int:pk>/excluir/", views.resource_delete, name="resource_delete"),
    path("recursos/<slug:kind>/<int:pk>/alternar/", views.resource_toggle, name="resource_toggle"),
    path("recursos/<slug:kind>/<int:pk>/testar/", views.resource_test, name="resource_test"),
    path("estrategias/", views.strategies, name="strategies"),
    path("estrategias/nova/", views.strategy_form, name="strategy_new"),
    path("estrategias/<int:pk>/editar/", views.strategy_form, name="strategy_edit"),
    path("estrategias/<int:pk>/excluir/", views.strategy_delete, name="strategy_delete"),
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("webhooks/novo/", views.webhook_form, name="webhook_new"),
    path("webhooks/<int:pk>/editar/", views.webhook_form, name="webhook_edit"),
    path("webhooks/entregas/<int:pk>/reenviar/", views.webhook_replay, name="webhook_replay"),
    path("recorrentes/", views.recurring, name="recurring"),
    path("recorrentes/nova/", views.recurring_form, name="recurring_new"),
    path("recorrentes/<int:pk>/editar/", views.recurring_form, name="recurring_edit"),
    path("configuracoes/", views.settings_page, name="settings"),
    path("configuracoes/grupo/<int:index>/", views.setting_group_save, name="setting_group_save"),
    path("configuracoes/<str:key>/restaurar/", views.setting_reset, name="setting_reset"),
]
