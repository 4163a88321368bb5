"""`code_spans` turns `backticks` in help text into <code>, and nothing else into markup."""

from transcripts.templatetags.text import code_spans


def test_backticks_become_code_and_html_stays_text():
    assert code_spans("run `manage.py load_endpoints` now") == "run <code>manage.py load_endpoints</code> now"
    assert code_spans("<script>alert(1)</script> `<b>`") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; <code>&lt;b&gt;</code>")
