from django.urls import path

from . import experiment_views, views

urlpatterns = [
    path("experiments/", experiment_views.experiment_list, name="experiment-list"),
    path("experiments/new/", experiment_views.experiment_new, name="experiment-new"),
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
