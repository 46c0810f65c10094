from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from rest_framework.routers import SimpleRouter

from orchestrator import api

router = SimpleRouter()
router.register("missions", api.MissionViewSet, basename="mission")
router.register("sessions", api.BrowserSessionViewSet, basename="session")
router.register("recurring-missions", api.RecurringMissionViewSet, basename="recurring-mission")
router.register("webhooks", api.WebhookEndpointViewSet, basename="webhook")
router.register("proxy-health", api.ProxyHealthViewSet, basename="proxy-health")
router.register("webhook-deliveries", api.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "execution/orchestrator-status",
        api.OrchestratorStatusView.as_view(),
        name="orchestrator-status",
    ),
    path("execution/orchestrator-status/", api.OrchestratorStatusSlashView.as_view()),
    path("execution/pause/", api.PauseView.as_view(), name="execution-pause"),
    path("execution/resume/", api.ResumeView.as_view(), name="execution-resume"),
    path("execution/domains/", api.DomainBreakerListView.as_view(), name="execution-domains"),
    path(
        "execution/domains/<str:domain>/resume/",
        api.DomainResumeView.as_view(),
        name="execution-domain-resume",
    ),
    path("missions/<int:pk>/explain/", api.MissionExplainView.as_view(), name="mission-explain"),
    path(
        "recurring-missions/<int:pk>/runs/",
        api.RecurringMissionRunsView.as_view(),
        name="recurring-mission-runs",
    ),
    path("missions/<int:pk>/reviewed/", api.MissionReviewedView.as_view(), name="mission-reviewed"),
    path("allocation/dry-run/", api.AllocationDryRunView.as_view(), name="allocation-dry-run"),
    path("", include(router.urls)),
]
