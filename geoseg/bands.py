"""Which of a scene's bands feed which of the model's inputs (pure: no I/O).

:func:`choose_bands` matches the model contract's band names (``red``,
``green``, ``blue``, ``nir``...) with a scene's bands, in this order:

1. ``--bidx``: the scene's bands in the contract's order, as given;
2. the names the file gives its bands, band by band: a common name in the
   band description (``blue``, ``B02_blue``, ``B08_nir``, ``Near Infrared``,
   STAC's ``nir08``...), else a band code in the description (``B02``,
   ``B8A``, ``SR_B5``...) read with its sensor's numbering, else the GDAL
   colour interpretation (``red``, ``green``, ``blue``, ``nir``...);
3. a file that names none of the bands: for a model of red, green and blue,
   the first data bands in that order (geoseg's behaviour before band
   matching: scenes written as RGB); any other model needs ``--bidx``.

Band codes: Sentinel-2 and Landsat 8/9 share ``B2`` blue, ``B3`` green and
``B4`` red, but near-infrared is Sentinel-2's ``B8`` (``B8A`` the narrow one)
and Landsat 8/9's ``B5``; Landsat 4-7 count from ``B1`` blue (``B4`` nir).
The numbering is chosen by a *family*: a zero-padded code (``B02``) or
``B8A``/``B12`` means Sentinel-2; ``SR_``/``ST_`` codes with ``B10`` or
``SR_B6`` mean Landsat 8/9, with ``ST_B6`` Landsat 4-7; else the family the
caller passes (from ``--sensor`` or the file's spacecraft tag).  Without a
family, only codes that every numbering reads alike are used (none of Landsat
4-7 is assumed): ``B2``/``B3``/``B4`` as blue/green/red, and a ``nir`` that
hangs on B5 versus B8 is left unmatched (the error asks for ``--bidx`` or
``--sensor``).  Two bands with one name: the broad band wins over the
narrow one (``nir`` before ``nir08``), else the match is ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError

Family = str  # "sentinel2", "landsat-oli" (8/9), "landsat-tm" (4-7)
FAMILIES: tuple[str, ...] = ("sentinel2", "landsat-oli", "landsat-tm")

# band codes per family -> common names (STAC eo common names)
_CODES: dict[str, dict[str, str]] = {
    "sentinel2": {"1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "rededge", "6": "rededge",
                  "7": "rededge", "8": "nir", "8a": "nir08", "9": "nir09", "10": "cirrus", "11": "swir16",
                  "12": "swir22"},
    "landsat-oli": {"1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "nir", "6": "swir16",
                    "7": "swir22", "8": "pan", "9": "cirrus", "10": "lwir11", "11": "lwir12"},
    "landsat-tm": {"1": "blue", "2": "green", "3": "red", "4": "nir", "5": "swir16", "6": "lwir", "7": "swir22",
                   "8": "pan"},
}
# common names that a band's description may spell, longest phrases first
_WORDS: tuple[tuple[str, str], ...] = (
    ("near infrared", "nir"), ("near-infrared", "nir"), ("red edge", "rededge"), ("red-edge", "rededge"),
    ("rededge", "rededge"), ("nir08", "nir08"), ("nir09", "nir09"), ("narrow nir", "nir08"), ("nir", "nir"),
    ("blue", "blue"), ("green", "green"), ("red", "red"), ("coastal", "coastal"), ("swir16", "swir16"),
    ("swir22", "swir22"), ("swir", "swir"), ("cirrus", "cirrus"), ("pan", "pan"), ("alpha", "alpha"),
)
RGB = ("red", "green", "blue")  # the order of a file that names none of its bands (geoseg's RGB scenes)
# colour interpretations (GDAL >= 3.10 names infrared bands too) that name a band
_CI = {"red": "red", "green": "green", "blue": "blue", "nir": "nir", "coastal": "coastal", "rededge": "rededge",
       "swir": "swir", "pan": "pan"}
# a wanted name also accepts these, in order, where no band has the name itself
_FALLBACK = {"nir": ("nir08",)}
_CODE = re.compile(r"^b(\d{1,2}a?)$")


@dataclass(frozen=True)
class BandChoice:
    """The scene's bands in the contract's order and how they were found."""

    bidx: tuple[int, ...]
    how: str  # "--bidx", "band names", "colour interpretation", "first bands"
    names: tuple[str, ...]  # the contract's band names, in order (what each chosen band feeds)
    warning: str | None = None  # a BandWarning for the caller to issue

    def to_dict(self) -> dict[str, int]:
        """``{"blue": 2, ...}``: the scene band of each model input band."""
        return dict(zip(self.names, self.bidx))


def _tokens(text: str | None) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _codes(tokens: list[str]) -> list[tuple[str, str]]:
    """(prefix, code) of each band code in a description's tokens: ``SR_B5`` ->
    ("sr", "5"), ``B02_blue`` -> ("", "02"), ``B8A`` -> ("", "8a")."""
    out = []
    for i, t in enumerate(tokens):
        m = _CODE.match(t)
        if m:
            out.append((tokens[i - 1] if i and tokens[i - 1] in ("sr", "st", "toa") else "", m.group(1)))
    return out


def band_family(descriptions: Sequence[str | None], hint: str | None = None) -> str | None:
    """The band-code numbering of a file's descriptions (see the module doc);
    ``hint`` (a family, from ``--sensor`` or the file's tags) where the
    codes themselves do not tell."""
    codes = [c for d in descriptions for c in _codes(_tokens(d))]
    nums = {n.lstrip("0") for _, n in codes}
    if any(n.startswith("0") for _, n in codes) or "8a" in nums or "12" in nums:
        return "sentinel2"
    if any(p in ("sr", "st") for p, _ in codes):
        if ("st", "6") in codes:
            return "landsat-tm"
        if "10" in nums or ("sr", "6") in codes:
            return "landsat-oli"
    if {"5", "7"} <= nums <= {"1", "2", "3", "4", "5", "7"} and (hint is None or hint.startswith("landsat")):
        # Landsat 4-7 surface reflectance as delivered: bands 1-5 and 7, band 6 (thermal) apart; Landsat
        # 8/9's stack has its band 6 (swir16) between them.  Read by the Landsat 8/9 numbering, B2-B5
        # would feed green, red, nir and swir as blue, green, red and nir.
        return "landsat-tm"
    return hint


def family_from_tags(tags: dict[str, str]) -> str | None:
    """The family a file's spacecraft tag names (``SPACECRAFT_NAME``
    ``Sentinel-2A``, ``SPACECRAFT_ID`` ``LANDSAT_8``...), else None."""
    for k, v in tags.items():
        if not any(w in k.upper() for w in ("SPACECRAFT", "SATELLITE", "PLATFORM")):
            continue
        t = re.sub(r"[^a-z0-9]", "", str(v).lower())
        if t.startswith("sentinel2"):
            return "sentinel2"
        if t in ("landsat8", "landsat9"):
            return "landsat-oli"
        if t in ("landsat4", "landsat5", "landsat7"):
            return "landsat-tm"
    return None


def check_sensor_family(path: str, family: str, descriptions: Sequence[str | None], tags: dict[str, str]) -> None:
    """Refuse a ``--sensor`` preset of one sensor (``family``: its band
    numbering) on a file that says it is of the other: Sentinel-2 band
    codes (``B02``, ``B8A``) or spacecraft tag against a Landsat preset,
    Landsat Collection 2 codes (``SR_B5``, ``ST_B10``) or tag against a
    Sentinel-2 one.

    Raises
    ------
    InputError
        Naming the evidence and the presets that fit.
    """
    codes = [c for d in descriptions for c in _codes(_tokens(d))]
    said = band_family(descriptions)
    evidence = ""
    if said is None and any(p in ("sr", "st") for p, _ in codes):
        said = "landsat-oli"
    if said is not None:
        evidence = "band names " + ", ".join(d for d in descriptions if d and _codes(_tokens(d)))[:80]
    else:
        said = family_from_tags(tags)
        if said is not None:
            evidence = next((f"{k}={v}" for k, v in tags.items() if family_from_tags({k: v})), "tags")
    if said is None or said.startswith("landsat") == family.startswith("landsat"):
        return
    is_s2 = said == "sentinel2"
    raise InputError(f"{path}: --sensor is a {'Landsat' if is_s2 else 'Sentinel-2'} preset but the file's {evidence} "
                     f"say {'Sentinel-2' if is_s2 else 'Landsat'}; expected a scene of the preset's sensor: pass "
                     f"--sensor {'sentinel2-l1c, sentinel2-l2a (or their -pb04)' if is_s2 else 'landsat-c2-l1 or landsat-c2-l2'}"
                     ", or --reflectance-scale S [--reflectance-offset O]")


def band_name(description: str | None, colorinterp: str, family: str | None) -> tuple[str | None, bool]:
    """The common name of one band and whether its description gave it: a
    word of the description, else its band code read by ``family``, else its
    colour interpretation; (None, False) if none."""
    tokens = _tokens(description)
    if tokens:
        joined = f" {' '.join(tokens)} "
        for word, name in _WORDS:
            if f" {word} " in joined:
                return name, True
        for _, code in _codes(tokens):
            coded = _code_name(code, family)
            if coded:
                return coded, True
    return _CI.get(colorinterp), False


def unused_nir(want: Sequence[str], colorinterp: Sequence[str], descriptions: Sequence[str | None],
               family: str | None = None) -> int | None:
    """The scene band (1-based) named near-infrared (``nir``, else ``nir08``) when the model does not read
    one (``want`` has no ``nir``), else None: a scene a near-infrared model would read better."""
    if "nir" in want or "nir08" in want:
        return None
    fam = band_family(descriptions, family)
    names = [band_name(d, c, fam)[0] for d, c in zip(descriptions, colorinterp)]
    for n in ("nir", "nir08"):
        if n in names:
            return names.index(n) + 1
    return None


def is_rgb(bands: Sequence[str]) -> bool:
    """Whether ``bands`` are red, green and blue, in any order (an RGB model's contract)."""
    return len(bands) == 3 and set(bands) == set(RGB)


def _code_name(code: str, family: str | None) -> str | None:
    code = code.lstrip("0") or "0"
    if family is not None:
        return _CODES[family].get(code)
    # no family: only a code that Sentinel-2 and Landsat 8/9 read alike
    # (Landsat 4-7's numbering is never assumed)
    s2, oli = _CODES["sentinel2"].get(code), _CODES["landsat-oli"].get(code)
    return s2 if s2 == oli else None


def choose_bands(
    path: str,
    want: Sequence[str],
    count: int,
    colorinterp: Sequence[str],
    descriptions: Sequence[str | None],
    bidx: Sequence[int] | None = None,
    family: str | None = None,
) -> BandChoice:
    """The scene's bands for the model's ``want`` (the contract's band names).

    ``colorinterp`` are GDAL colour-interpretation names (``red``, ``alpha``,
    ``undefined``...), ``descriptions`` the band descriptions, both one per
    band; ``family`` a band-code numbering hint (:func:`band_family`).

    Raises
    ------
    InputError
        ``--bidx`` naming a missing band or the wrong number of bands; a scene
        with too few data bands; a model band no scene band is named for
        (with the ``--bidx`` to try where the scene names some).
    """
    want = tuple(want)
    need, txt = len(want), ", ".join(want)
    if bidx:
        return _by_bidx(path, want, count, tuple(bidx))
    fam = band_family(descriptions, family)
    named = [band_name(d, c, fam) for d, c in zip(descriptions, colorinterp)]
    names = [n for n, _ in named]
    data = [i + 1 for i in range(count) if colorinterp[i] != "alpha" and names[i] != "alpha"]
    if len(data) < need:
        raise InputError(_too_few(path, want, count, data, names, colorinterp))
    found: dict[str, int] = {}
    for w in want:
        for n in (w, *_FALLBACK.get(w, ())):
            hits = [b for b in data if names[b - 1] == n]
            if len(hits) > 1:  # PlanetScope 8-band: coastal_blue/blue, green_i/green: the band named just so
                hits = [b for b in hits if _tokens(descriptions[b - 1]) == [n]] or hits
            if len(hits) > 1:
                raise InputError(f"{path}: bands {', '.join(map(str, hits))} are all named {n!r}; expected one "
                                 f"band per model band ({txt}): choose them with --bidx")
            if hits:
                found[w] = hits[0]
                break
    if len(found) == need:
        how = "band names" if any(named[b - 1][1] for b in found.values()) else "colour interpretation"
        return BandChoice(tuple(found[w] for w in want), how, want)
    if not found and is_rgb(want):
        # the first data bands as red, green, blue, handed over in the model's order
        chosen = tuple(data[RGB.index(w)] for w in want)
        warning = None
        if len(data) > need:
            warning = (f"{path}: {len(data)} bands without colour interpretation; using bands "
                       f"{','.join(map(str, data[:need]))} as red, green, blue (no band names either: choose others "
                       "with --bidx)")
        return BandChoice(chosen, "first bands", want, warning)
    codes = [c for d in descriptions for c in _codes(_tokens(d))]
    coded = "landsat" if any(p in ("sr", "st") for p, _ in codes) else "any" if codes else ""
    raise InputError(_unmatched(path, want, count, data, names, found, coded if fam is None else ""))


def _by_bidx(path: str, want: tuple[str, ...], count: int, bidx: tuple[int, ...]) -> BandChoice:
    """The bands ``--bidx`` names, checked against the raster and the model."""
    need, txt = len(want), ", ".join(want)
    bad = [b for b in bidx if b < 1 or b > count]
    if bad:
        raise InputError(f"{path}: --bidx {','.join(map(str, bidx))} names band(s) {bad} but the raster has "
                         f"{count}; expected band numbers 1..{count}")
    if len(bidx) != need:
        raise InputError(f"{path}: --bidx gives {len(bidx)} bands, the model expects {need} ({txt}); "
                         f"pass {need} band numbers in that order")
    return BandChoice(bidx, "--bidx", want, _bidx_warning(path, want, bidx))


def _bidx_warning(path: str, want: tuple[str, ...], bidx: tuple[int, ...]) -> str | None:
    """A warning for a ``--bidx`` that feeds one band to two model bands (a
    band the file marks alpha is taken as given: GDAL marks the fourth band
    of many red, green, blue, nir files so)."""
    notes = []
    for b in dict.fromkeys(bidx):
        fed = [w for w, i in zip(want, bidx) if i == b]
        if len(fed) > 1:
            notes.append(f"band {b} feeds {' and '.join(fed)}")
    if not notes:
        return None
    return (f"{path}: --bidx {','.join(map(str, bidx))}: {'; '.join(notes)}; the model expects one band of each of "
            f"{', '.join(want)}: check the band numbers")


def _too_few(path: str, want: tuple[str, ...], count: int, data: list[int], names: list[str | None],
             colorinterp: Sequence[str]) -> str:
    """The one-line error of a scene with fewer data bands than the model."""
    bands = [f"{b}={names[b - 1] or ('alpha' if colorinterp[b - 1] == 'alpha' else '?')}" for b in range(1, count + 1)]
    msg = (f"{path}: raster has {len(data)} data band(s) ({', '.join(bands)}), the model expects {len(want)} "
           f"({', '.join(want)}); ")
    alpha = [b for b in range(1, count + 1) if b not in data]
    if alpha:
        msg += f"band(s) {','.join(map(str, alpha))} are marked alpha: if they hold data, name them in --bidx; "
    if count < 3:  # fewer bands than any model reads: --bidx or another model cannot help
        return msg + ("Landsat and Sentinel-2 products come one file per band: stack the bands into one file "
                      f"in the model's order first (`gdalbuildvrt -separate stack.vrt` with the {', '.join(want)} "
                      "files), or pass the product's STAC item")
    if "nir" in want and "nir" not in names and "nir08" not in names:
        return msg + "a scene without near-infrared: classify it with -m default (red, green, blue)" + \
            (", or choose the bands with --bidx" if alpha else "")
    return msg + "use a scene with these bands or choose bands with --bidx"


def _unmatched(path: str, want: tuple[str, ...], count: int, data: list[int], names: list[str | None],
               found: dict[str, int], coded: str) -> str:
    """The one-line error of a scene whose bands cannot all be matched
    (``coded``: "landsat" where its band codes are Landsat's but of an
    unknown numbering, "any" where they are of an unknown sensor)."""
    missing = [w for w in want if w not in found]
    named = ", ".join(f"{b}={names[b - 1]}" for b in data if names[b - 1]) or "none"
    hint = ""
    free = [b for b in data if b not in found.values() and not names[b - 1]]
    if found and len(free) == len(missing):
        guess = dict(found, **dict(zip(missing, free)))
        hint = f" (e.g. --bidx {','.join(str(guess[w]) for w in want)} if band(s) {','.join(map(str, free))} " \
               f"hold {', '.join(missing)})"
    elif not found and len(data) == 4 and want == ("blue", "green", "red", "nir"):
        hint = (" (a NAIP file holds red, green, blue, nir: --bidx 3,2,1,4; a blue, green, red, nir stack such as "
                "PlanetScope's: --bidx 1,2,3,4)")
    fam = {"landsat": "; or --sensor landsat-c2-l2 or landsat-c2-l1 for Landsat 8/9 (SR_B5/B5 is nir there, "
                      "SR_B4 on Landsat 4-7)",
           "any": "; or --sensor (band codes such as B5 and B8 differ between Sentinel-2 and Landsat: "
                  "sentinel2-* reads B8 as nir, landsat-c2-* B5)"}.get(coded, "")
    return (f"{path}: cannot tell which of its {count} bands are {', '.join(missing)} (bands named: {named}); "
            f"the model expects {', '.join(want)}: pass --bidx with {len(want)} band numbers in that "
            f"order{hint}{fam}")
