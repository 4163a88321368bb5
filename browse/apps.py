from django.apps import AppConfig


class BrowseConfig(AppConfig):
    """The pages that read both apps: the transcript list, filters, detail, charts, exports, the experiment page,
    the home dashboard and the queue made from a filter. It sits above `transcripts` and `judging`, so
    `transcripts` never names `judging`. No models."""

    name = "browse"
