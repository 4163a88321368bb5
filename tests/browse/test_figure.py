"""The publication figure: SVG, PDF and PNG of the charts page's headline view, with the page's rates and its
pooling note (read back from the SVG's paths and the PDF's drawing operators), and a methods paragraph naming
exactly the conditions it shows."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zlib

import pytest
from django.urls import reverse
from PIL import Image

from browse.figure import PNG_DPI
from tests.builders import pooled_corpus

from .test_charts import chart

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def figure_file(client, fmt: str, **params) -> bytes:
    response = client.get(reverse("chart-figure-file", args=[fmt]), params)
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].endswith(f'.{fmt}"')
    return response.content


def _points(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"([-\d.]+) ([-\d.]+)", d)]


def svg_rates(svg: bytes) -> dict[str, list[float]]:
    """Each line's y values read back from the SVG: its path's points placed against its panel's frame (y from 0%
    at the frame's bottom to 100% at its top)."""
    root = ET.fromstring(svg)  # noqa: S314 — the app's own figure
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}
    frames = {gid.removeprefix("panel "): _points(g.find(f"{SVG}path").get("d"))
              for gid, g in groups.items() if gid.startswith("panel ")}
    rates = {}
    for gid, group in groups.items():
        if gid.startswith("rate "):
            panel, _ = gid.removeprefix("rate ").split(" · ")
            ys = [y for _, y in frames[panel]]
            bottom, top = max(ys), min(ys)
            rates[gid] = [(bottom - y) / (bottom - top) for _, y in _points(group.find(f"{SVG}path").get("d"))]
    return rates


def test_the_svg_shows_the_pages_rates_and_says_what_it_pools(alice_client):
    pooled_corpus()
    page = chart(alice_client, "misaligned-vs-k")
    svg = figure_file(alice_client, "svg")
    text = " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))  # noqa: S314
    assert "Misaligned rate vs k" in text and "Dataset: insecure" in text
    assert "pooled over: CoT mode (native, off); System prompt (default, safety_first); Temperature (0.7, 1.0)" in text
    rates = svg_rates(svg)
    assert set(rates) == {f"rate Dataset: insecure · {trace['name']}" for trace in page["data"]}
    for trace in page["data"]:
        assert rates[f"rate Dataset: insecure · {trace['name']}"] == pytest.approx(trace["y"], abs=0.002)


NUMBER = r"(-?[\d.]+)"


def pdf_content(pdf: bytes) -> str:
    """The page's drawing operators: every Flate stream of the file that inflates (fonts and images inflate to
    no operators that the readers below match)."""
    content = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            content.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            continue
    return "\n".join(content)


def pdf_text(content: str) -> str:
    """The text shown (`[...] TJ` arrays of two-byte strings), one line per array."""
    lines = []
    for array in re.findall(r"\[(.*?)\]\s*TJ", content, re.S):
        text = "".join(re.findall(r"\(((?:\\.|[^\\)])*)\)", array))
        lines.append(re.sub(r"\\(.)", r"\1", text).replace("\x00", ""))
    return "\n".join(lines)


def pdf_lines(content: str) -> dict[tuple[float, ...], tuple[float, float, list[tuple[float, float]]]]:
    """Each rate line by its stroke colour (r, g, b): the line drawn in a panel's clip rectangle with the figure's
    line width, as (the rectangle's bottom, its height, the line's points in PDF points from the page's bottom)."""
    lines = re.findall(
        rf"{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+re\s+W\s+n\s+2\s+J\s+1\.2\s+w\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
        rf"\s+RG\s+/DeviceRGB\s+cs\s+((?:{NUMBER}\s+{NUMBER}\s+[ml]\s+)+)S", content)
    point = rf"{NUMBER}\s+{NUMBER}\s+[ml]"
    return {tuple(round(float(c), 3) for c in (r, g, b)): (
        float(bottom), float(height), [(float(x), float(y)) for x, y in re.findall(point, path)])
        for _x, bottom, _width, height, r, g, b, path, *_ in lines}


def pdf_rates(content: str) -> dict[tuple[float, ...], list[float]]:
    """Each rate line's y values by its colour, placed against its panel (0% at the bottom, 100% at the top)."""
    return {rgb: [(y - bottom) / height for _, y in points]
            for rgb, (bottom, height, points) in pdf_lines(content).items()}


def colour(hex_colour: str) -> tuple[float, ...]:
    return tuple(round(int(hex_colour[i:i + 2], 16) / 255, 3) for i in (1, 3, 5))


def test_the_pdf_is_one_page_with_the_pages_rates_and_its_text(alice_client):
    pooled_corpus()
    page = chart(alice_client, "misaligned-vs-k")
    pdf = figure_file(alice_client, "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 1
    assert b"/FontFile2" in pdf  # TrueType fonts embedded (journals refuse Type 3)
    content = pdf_content(pdf)
    rates = pdf_rates(content)
    assert len(rates) == len(page["data"]) == 2
    for trace in page["data"]:
        assert rates[colour(trace["line"]["color"])] == pytest.approx(trace["y"], abs=0.002)
    text = pdf_text(content)
    for shown in ("Misaligned rate vs k", "Dataset: insecure", "pooled over: CoT mode (native, o",
                  "Temperature (0.7, 1.0)", *(trace["name"] for trace in page["data"])):
        assert shown in text  # ("off" is drawn with the ff ligature's glyph)


def test_the_png_is_an_image_at_print_resolution_with_the_pdfs_points(alice_client):
    """The PNG is the PDF's page at PNG_DPI: each point of a rate line (where the PDF puts it, at the page's rate)
    is a dot of the line's colour."""
    pooled_corpus()
    page = chart(alice_client, "misaligned-vs-k")
    image = Image.open(io.BytesIO(figure_file(alice_client, "png")))
    assert image.format == "PNG" and image.width >= 4 * PNG_DPI and image.height >= 3 * PNG_DPI
    pixels = image.convert("RGB")
    lines = pdf_lines(pdf_content(figure_file(alice_client, "pdf")))
    assert len(lines) == len(page["data"]) == 2
    scale = PNG_DPI / 72  # PDF points are 1/72 inch
    for trace in page["data"]:
        _, _, points = lines[colour(trace["line"]["color"])]
        for x, y in points:
            seen = pixels.getpixel((round(x * scale), round(image.height - y * scale)))
            assert tuple(round(c / 255, 3) for c in seen) == pytest.approx(colour(trace["line"]["color"]), abs=0.02)


def test_a_figure_split_by_panels_draws_a_panel_each(alice_client):
    pooled_corpus()
    page = chart(alice_client, "misaligned-vs-k", facet="cot", colour="model")
    rates = svg_rates(figure_file(alice_client, "svg", facet="cot", colour="model"))
    assert len(rates) == len(page["data"]) == 4


def test_the_methods_paragraph_names_exactly_the_conditions_shown(alice_client):
    made = pooled_corpus()
    judged = sum(t.misaligned is not None for t in made if t.condition.model_name == "model-a")
    page = alice_client.get(reverse("chart-figure"), {"model": "model-a"}).content.decode()
    assert (
        f"over {judged} judged answers in 4 conditions (model model-a; dataset none (k = 0 controls), insecure; "
        "k (examples) 0, 8; cot mode native, off; system prompt default, safety_first; temperature 0.7, 1.0; "
        "experiment pooled). Each point is pooled over: CoT mode (native, off); System prompt (default, "
        "safety_first); Temperature (0.7, 1.0)."
    ) in page
    assert 'src="/charts/figure.png?model=model-a"' in page
    for fmt in ("svg", "pdf", "png"):
        assert f'id="figure-{fmt}" href="/charts/figure.{fmt}?model=model-a" download' in page


def test_the_methods_block_links_its_figure(alice_client):
    made = pooled_corpus()
    experiment = made[0].experiment
    page = alice_client.get(reverse("experiment-methods", args=[experiment.pk])).content.decode()
    assert f'href="/charts/figure/?experiment={experiment.pk}"' in page
    assert f'href="/charts/figure.pdf?experiment={experiment.pk}" download' in page


def test_an_unknown_format_or_option_is_refused(alice_client):
    assert alice_client.get("/charts/figure.gif").status_code == 404
    assert alice_client.get("/charts/figure.svg", {"colour": "nonsense"}).status_code == 400


@pytest.mark.parametrize("url", ["/charts/figure/", "/charts/figure.svg", "/charts/figure.png"])
def test_auditors_cannot_see_the_figure(bob_client, url):
    assert bob_client.get(url).status_code == 403
