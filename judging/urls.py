from django.urls import path

from . import home_views, import_views, judge_views, validity_views, views

urlpatterns = [
    path("", home_views.home, name="home"),
    path("annotate/", views.annotate_home, name="annotate-home"),
    path("annotate/<int:queue_id>/next/", views.annotate_next, name="annotate-next"),
    path("annotate/<int:queue_id>/undo/", views.annotate_undo, name="annotate-undo"),
    # Items are named by their random token, never by pk or position (see judging.assignment on blinding).
    path("annotate/<int:queue_id>/items/<uuid:token>/", views.annotate_item, name="annotate-item"),
    path("annotate/<int:queue_id>/items/<uuid:token>/skip/", views.annotate_skip, name="annotate-skip"),
    path("queues/", views.queue_list, name="queue-list"),
    path("queues/new/", views.queue_create, name="queue-create"),
    path("queues/<int:pk>/", views.queue_detail, name="queue-detail"),
    path("queues/<int:pk>/items/", views.queue_items, name="queue-items"),
    path("queues/<int:pk>/agreement/", views.queue_agreement, name="queue-agreement"),
    path("queues/<int:pk>/items/<uuid:token>/adjudicate/", views.queue_adjudicate, name="queue-adjudicate"),
    path("queues/<int:pk>/labels.csv", views.labels_export, name="labels-export"),
    path("queues/<int:pk>/labels/import/", views.labels_import, name="labels-import"),
    path("taxonomies/", views.taxonomy_list, name="taxonomy-list"),
    path("taxonomies/<int:pk>/edit/", views.taxonomy_edit, name="taxonomy-edit"),
    path("imports/", import_views.import_upload, name="import-upload"),
    path("experiments/<int:pk>/results/", judge_views.experiment_results, name="experiment-results"),
    path("experiments/<int:pk>/rejudge/", judge_views.experiment_rejudge, name="experiment-rejudge"),
    path("experiments/<int:pk>/judging/activate/", judge_views.experiment_activate, name="experiment-judging-activate"),
    path("experiments/<int:pk>/compare/", judge_views.experiment_compare, name="experiment-compare"),
    path("experiments/<int:pk>/judges/", validity_views.judge_vs_judge, name="judge-vs-judge"),
    path("experiments/<int:pk>/judges/<str:score>/", validity_views.judge_vs_judge_scatter,
         name="judge-vs-judge-scatter"),
    path("gold/", validity_views.gold_list, name="gold-list"),
    path("gold/<int:pk>/", validity_views.gold_detail, name="gold-detail"),
    path("gold/<int:pk>/run/", validity_views.gold_run, name="gold-run"),
    path("queues/<int:pk>/spans/", validity_views.queue_spans, name="queue-spans"),
]
