from django.urls import path

from . import browse_views, experiment_views, views

urlpatterns = [
    path("transcripts/", browse_views.transcript_list, name="transcript-list"),
    path("transcripts/<int:pk>/", browse_views.transcript_detail, name="transcript-detail"),
    path("transcripts/export.<str:fmt>", browse_views.transcript_export, name="transcript-export"),
    path("charts/", browse_views.chart_page, name="charts"),
    path("charts/questions/", browse_views.question_results, name="question-results"),
    path("charts/<slug:name>.json", browse_views.chart_data, name="chart-data"),
    path("experiments/", experiment_views.experiment_list, name="experiment-list"),
    path("experiments/new/", experiment_views.experiment_new, name="experiment-new"),
    path("experiments/<int:pk>/", experiment_views.experiment_detail, name="experiment-detail"),
    path("experiments/<int:pk>/progress/", experiment_views.experiment_progress, name="experiment-progress"),
    path("experiments/<int:pk>/launch/", experiment_views.experiment_action, {"action": "launch"},
         name="experiment-launch"),
    path("experiments/<int:pk>/cancel/", experiment_views.experiment_action, {"action": "cancel"},
         name="experiment-cancel"),
    path("experiments/<int:pk>/resume/", experiment_views.experiment_action, {"action": "resume"},
         name="experiment-resume"),
    path("experiments/<int:pk>/retry-failed/", experiment_views.experiment_action, {"action": "retry-failed"},
         name="experiment-retry-failed"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("questions/", views.question_set_list, name="question-set-list"),
    path("questions/<int:pk>/", views.question_set_detail, name="question-set-detail"),
]
