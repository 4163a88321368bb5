from django.urls import path

from . import discovery_views, experiment_views, figure_views, home_views, queue_views, views

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
    path("discovery/", discovery_views.discovery_home, name="discovery"),
    path("discovery/embed/", discovery_views.discovery_embed, name="discovery-embed"),
    path("discovery/search/", discovery_views.discovery_search, name="discovery-search"),
    path("discovery/runs/<int:pk>/", discovery_views.discovery_run, name="discovery-run"),
    path("discovery/runs/<int:pk>/map.json", discovery_views.discovery_map, name="discovery-map"),
    path("discovery/runs/<int:pk>/clusters/<int:label>/category/", discovery_views.discovery_category,
         name="discovery-category"),
]
