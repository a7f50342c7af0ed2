"""The one result type: `Prediction`, what the engine gives, the API answers (as JSON), the CLI prints and the
GUI shows; its public JSON fields are declared here once, and the API's schema is derived from them."""

from __future__ import annotations

import base64
import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skinscan import DISCLAIMER

HeatmapFn = Callable[[], np.ndarray]
HEATMAP_KEY = "heatmap_png"
# the columns of `skinscan predict --csv` and of the desktop app's export, so either file reads like the other
CSV_FIELDS = ["path", "status", "verdict", "label", "probability", "severity", "severity_name", "threshold", "reason"]


def public(
    description: str | None = None,
    *,
    key: str | None = None,
    json_type: Any = None,
    required: bool = False,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """The metadata that puts a `Prediction` field into the JSON answer and the API's schema.

    Args:
        description: what the field means, for the OpenAPI document.
        key: its JSON name, where that is not the field's name.
        json_type: the JSON value's type, where that is not the field's (a tuple travels as a list).
        required: the schema requires it even though the dataclass has a default for it.
        encode, decode: value → JSON and back, where the value is not JSON as it is.
    """
    return {"json": {"description": description, "key": key, "json_type": json_type, "required": required,
                     "encode": encode, "decode": decode}}  # fmt: skip


def _rounded(value: float | None) -> float | None:
    # four decimals, as the answers have always had them (clients compare against them)
    return None if value is None else round(value, 4)


def _from_base64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(kw_only=True)
class Prediction:
    """One image's result. `status` is "ok" or "rejected" (with `reason`, and no verdict).

    The fields with `public` metadata are the JSON answer, in this order; the rest stay in the process. Keyword-only,
    so that the fields can stand in the answer's order whether or not they have defaults.
    """

    status: str = field(metadata=public('"ok", or "rejected" when the input checks refuse the image', decode=str))
    verdict: str | None = field(
        default=None,
        metadata=public("the headline: what to do, in words for a person (\"Have a doctor look at it\"); the same "
                        "words in every interface"),
    )  # fmt: skip
    verdict_code: str | None = field(
        default=None,
        metadata=public("the verdict for programs: low_concern, see_doctor, see_doctor_soon, or cannot_judge for a "
                        "rejected image"),
    )  # fmt: skip
    probability: float | None = field(
        default=None, metadata=public("calibrated probability of malignancy", encode=_rounded, decode=float)
    )
    label: str | None = field(
        default=None, metadata=public("the class name on the probability's side of the threshold (kept for the seed's "
                                      "clients; show `verdict` to people)"),
    )  # fmt: skip
    severity: int | None = field(default=None, metadata=public("1 (no concern) to 6", decode=int))
    severity_name: str | None = field(default=None, metadata=public())
    description: str | None = field(default=None, metadata=public())
    recommendation: str | None = field(default=None, metadata=public())
    colour: str | None = field(default=None, metadata=public("the severity's colour, #rrggbb"))
    threshold: float = field(
        metadata=public("the probability at and above which the label is malignant", encode=_rounded, decode=float)
    )
    reason: str | None = field(default=None, metadata=public("why a rejected image could not be judged"))
    image_size: tuple[int, int] = field(
        default=(0, 0),
        metadata=public("width and height as decoded", json_type=list[int], encode=list,
                        decode=lambda size: tuple(int(v) for v in size)),
    )  # fmt: skip
    overlay_png: bytes | None = field(
        default=None,
        repr=False,
        metadata=public("with ?heatmap=true: the overlay as a base64 PNG", key=HEATMAP_KEY, json_type=str | None,
                        encode=lambda png: base64.b64encode(png).decode("ascii"), decode=_from_base64),
    )  # fmt: skip
    heatmap_legend: str | None = field(
        default=None,
        metadata=public("with ?heatmap=true: what the heatmap's colours mean, in words to show beside it"),
    )
    diagnoses: list[dict[str, Any]] | None = field(
        default=None,
        metadata=public("where the model has a diagnosis output: the three most likely of seven diagnoses, most "
                        "likely first ({code, name, probability, malignant}); a screening aid's guess, not a diagnosis",
                        decode=list),
    )  # fmt: skip
    site: dict[str, Any] | None = field(
        default=None,
        metadata=public("the site profile in use, where one is (name, created, images, expected sensitivity and "
                        "specificity at this clinic); null for the model's own operating point", decode=dict),
    )  # fmt: skip
    disclaimer: str = field(default=DISCLAIMER, metadata=public(required=True))  # every answer carries it
    ood_distance: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    heatmap_fn: HeatmapFn | None = field(default=None, repr=False, compare=False)
    _heatmap: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)  # cache of `heatmap`
    timing_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def likely_diagnoses(self) -> str:
        """The most likely diagnoses with their probabilities, "melanoma 52%, ..." ("" without the output)."""
        return ", ".join(f"{d['name']} {d['probability']:.0%}" for d in self.diagnoses or [])

    @property
    def diagnosis_line(self) -> str:
        """The most likely diagnoses as a sentence for a person (empty for a model without the output)."""
        return f"Most likely, as the model sees it (not a diagnosis): {self.likely_diagnoses}" if self.diagnoses else ""

    @property
    def display_label(self) -> str:
        """The heading a person sees: the verdict ("Have a doctor look at it"); the class name from a server too old
        to send one."""
        return self.verdict or (self.label or "").capitalize()

    @property
    def heatmap(self) -> np.ndarray | None:
        """float32 HxW in [0, 1] at the input image's size (with heatmap=True), built on first use."""
        if self.heatmap_fn is None:
            return None
        if self._heatmap is None:
            self._heatmap = self.heatmap_fn()
        return self._heatmap

    def to_dict(self, *, include_heatmap: bool = True) -> dict[str, Any]:
        """The JSON answer: every public field, `heatmap_png` only when there is an overlay and it is asked for."""
        data: dict[str, Any] = {}
        for spec in json_fields():
            value = getattr(self, spec.name)
            if spec.key == HEATMAP_KEY and (value is None or not include_heatmap):
                continue
            data[spec.key] = value if value is None else spec.encode(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """A JSON answer (a server's /predict, or `to_dict`) as a Prediction. Unknown keys (the server's model,
        time, latency) are ignored; a missing or null optional key takes the field's default.

        Raises:
            ValueError: `status` or `threshold` is missing, or a value cannot be read (a corrupt heatmap).
        """
        values: dict[str, Any] = {}
        for spec in json_fields():
            value = data.get(spec.key)
            if value is not None:
                values[spec.name] = spec.decode(value)
            elif spec.needs_value:
                raise ValueError(f"the answer has no {spec.key!r}")
        return cls(**values)


@dataclass(frozen=True)
class JsonField:
    """A public field of `Prediction` as the JSON answer and the API's schema see it."""

    name: str  # the dataclass field
    key: str  # the JSON name
    type: Any  # the JSON value's type
    description: str | None
    required: bool  # in the schema: every answer has it
    needs_value: bool  # the dataclass has no default, so `from_dict` cannot do without it
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


@functools.cache
def json_fields() -> tuple[JsonField, ...]:
    """`Prediction`'s public fields in answer order (read once: the dataclass does not change at run time)."""
    hints = typing.get_type_hints(Prediction)
    out = []
    for f in dataclasses.fields(Prediction):
        meta = f.metadata.get("json")
        if meta is None:
            continue
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(
            JsonField(
                name=f.name,
                key=meta["key"] or f.name,
                type=meta["json_type"] or hints[f.name],
                description=meta["description"],
                required=no_default or meta["required"],
                needs_value=no_default,
                encode=meta["encode"] or _same,
                decode=meta["decode"] or _same,
            )
        )
    return tuple(out)


def _same(value: Any) -> Any:
    return value
