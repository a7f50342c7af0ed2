"""A heatmap file that explains itself: the overlay with its colour scale and the legend's sentence beneath it, for
heatmaps written to disk (`skinscan predict --heatmap`), where no page or window is there to explain them."""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

from skinscan.core.heatmap import HEATMAP_LEGEND, legend_ramp


def with_legend(overlay_png: bytes, legend: str | None = None) -> bytes:
    """The overlay PNG with a strip below it: the colour ramp labelled "threshold" to "highest severity", and the
    legend's sentence."""
    legend = legend or HEATMAP_LEGEND
    overlay = Image.open(io.BytesIO(overlay_png)).convert("RGB")
    width = max(overlay.width, 320)
    font = ImageFont.load_default(size=13)
    lines = textwrap.wrap(legend, width=max(30, width // 7))
    line_height = 17
    strip = 12 + 14 + 4 + 16 + 8 + line_height * len(lines) + 10
    page = Image.new("RGB", (width, overlay.height + strip), (255, 255, 255))
    page.paste(overlay, ((width - overlay.width) // 2, 0))
    draw = ImageDraw.Draw(page)
    y = overlay.height + 12
    ramp_width = width - 24
    page.paste(Image.fromarray(legend_ramp(ramp_width, 14)), (12, y))
    y += 18
    draw.text((12, y), "threshold", fill=(60, 60, 60), font=font)
    draw.text((12 + ramp_width, y), "highest severity", fill=(60, 60, 60), font=font, anchor="ra")
    y += 24
    for line in lines:
        draw.text((12, y), line, fill=(30, 30, 30), font=font)
        y += line_height
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
