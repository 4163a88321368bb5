from django.urls import path

from .annotation import views as annotation
from .imports import views as imports
from .results import views as results
from .validity import views as validity

urlpatterns = [
    path("annotate/", annotation.annotate_home, name="annotate-home"),
    path("annotate/<int:queue_id>/next/", annotation.annotate_next, name="annotate-next"),
    path("annotate/<int:queue_id>/undo/", annotation.annotate_undo, name="annotate-undo"),
    # Items are named by their random token, never by pk or position (see judging.annotation.assignment on blinding).
    path("annotate/<int:queue_id>/items/<uuid:token>/", annotation.annotate_item, name="annotate-item"),
    path("annotate/<int:queue_id>/items/<uuid:token>/skip/", annotation.annotate_skip, name="annotate-skip"),
    path("queues/", annotation.queue_list, name="queue-list"),
    path("queues/<int:pk>/", annotation.queue_detail, name="queue-detail"),
    path("queues/<int:pk>/items/", annotation.queue_items, name="queue-items"),
    path("queues/<int:pk>/agreement/", annotation.queue_agreement, name="queue-agreement"),
    path("queues/<int:pk>/items/<uuid:token>/adjudicate/", annotation.queue_adjudicate, name="queue-adjudicate"),
    path("queues/<int:pk>/labels.csv", annotation.labels_export, name="labels-export"),
    path("queues/<int:pk>/labels.parquet", annotation.labels_export_parquet, name="labels-export-parquet"),
    path("queues/<int:pk>/labels/import/", annotation.labels_import, name="labels-import"),
    path("queues/<int:pk>/calibration/", validity.queue_calibration, name="queue-calibration"),
    path("queues/<int:pk>/calibration/<slug:name>.json", validity.queue_calibration_curve,
         name="queue-calibration-curve"),
    path("queues/<int:pk>/calibration/transcripts/", validity.queue_calibration_cell,
         name="queue-calibration-cell"),
    path("taxonomies/", annotation.taxonomy_list, name="taxonomy-list"),
    path("taxonomies/<int:pk>/edit/", annotation.taxonomy_edit, name="taxonomy-edit"),
    path("imports/", imports.import_upload, name="import-upload"),
    path("imports/<uuid:job>/", imports.import_progress, name="import-progress"),
    path("experiments/<int:pk>/results/", results.experiment_results, name="experiment-results"),
    path("experiments/<int:pk>/calibration/<int:queue>/", results.experiment_calibration_rates,
         name="experiment-calibration-rates"),
    path("experiments/<int:pk>/rejudge/", results.experiment_rejudge, name="experiment-rejudge"),
    path("experiments/<int:pk>/judging/activate/", results.experiment_activate, name="experiment-judging-activate"),
    path("experiments/<int:pk>/compare/", results.experiment_compare, name="experiment-compare"),
    path("experiments/<int:pk>/statistics/", results.experiment_statistics, name="experiment-statistics"),
    path("experiments/<int:pk>/statistics/dose-response.json", results.experiment_dose_response,
         name="experiment-dose-response"),
    path("experiments/<int:pk>/statistics/paired/", results.experiment_paired_statistics,
         name="experiment-paired-statistics"),
    path("experiments/<int:pk>/methods/", results.experiment_methods, name="experiment-methods"),
    path("experiments/<int:pk>/definition.yaml", results.experiment_definition, name="experiment-definition"),
    path("experiments/<int:pk>/judges/", validity.judge_vs_judge, name="judge-vs-judge"),
    path("experiments/<int:pk>/judges/<str:score>/", validity.judge_vs_judge_scatter,
         name="judge-vs-judge-scatter"),
    path("gold/", validity.gold_list, name="gold-list"),
    path("gold/<int:pk>/", validity.gold_detail, name="gold-detail"),
    path("gold/<int:pk>/run/", validity.gold_run, name="gold-run"),
    path("queues/<int:pk>/spans/", validity.queue_spans, name="queue-spans"),
]
