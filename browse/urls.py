from django.urls import path

from . import experiment_views, figure_views, home_views, queue_views, views

urlpatterns = [
    path("", home_views.home, name="home"),
    path("transcripts/", views.transcript_list, name="transcript-list"),
    path("transcripts/<int:pk>/", views.transcript_detail, name="transcript-detail"),
    path("transcripts/export.<str:fmt>", views.transcript_export, name="transcript-export"),
    path("charts/", views.chart_page, name="charts"),
    path("charts/questions/", views.question_results, name="question-results"),
    path("charts/figure/", figure_views.figure_page, name="chart-figure"),
    path("charts/figure.<str:fmt>", figure_views.figure_file, name="chart-figure-file"),
    path("charts/<slug:name>.json", views.chart_data, name="chart-data"),
    path("experiments/<int:pk>/", experiment_views.experiment_detail, name="experiment-detail"),
    path("queues/new/", queue_views.queue_create, name="queue-create"),
]
