"""Anomaly classes of the galaxy simulator: one small registered class each.

A class is a subclass of :class:`Anomaly` registered under its name with
:func:`register_anomaly`; it names the :class:`Stage` of the simulator where it acts and
implements :meth:`Anomaly.apply`, which changes the rows of its objects in the
:class:`~speculum.sim.block.BlockState` and returns each row's truth (parameters and
observed-frame windows). ``SimConfig(anomaly_classes=...)`` validation, the simulator's
stages and the truth columns follow from the registry. :data:`ANOMALY_CLASSES` (and the
default ``SimConfig().anomaly_classes``) are the classes registered when
:mod:`speculum.sim` is imported, so a class defined in this module is everywhere at once;
one registered later from outside is usable by naming it in ``anomaly_classes``.

Reproducibility: within a stage, classes run in registration order and draw from the
block's generator in turn. A new class must draw nothing when it has no rows, so that data
sets without it keep their random stream; ``reddened`` and ``odd_lines`` draw one number
per object of the block whatever the classes drawn, as they always have. Adding a class
to this module extends the default ``SimConfig().anomaly_classes`` (and so what the
default configuration draws); saved configurations list their classes and reproduce.

Example:
    >>> from speculum.sim import ANOMALY_CLASSES
    >>> ANOMALY_CLASSES
    ('agn', 'star_blend', 'reddened', 'odd_lines', 'pair', 'artefact')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import torch

from speculum.instruments import sky_lines
from speculum.sim.block import BlockState, Windows, uniform
from speculum.sim.lines import BROAD_LINES, C_KMS, NARROW_LINES

if TYPE_CHECKING:
    from speculum.sim.galaxy import GalaxySimulator

__all__ = [
    "ANOMALY_CLASSES",
    "AGN",
    "Anomaly",
    "Artefact",
    "OddLines",
    "Pair",
    "Reddened",
    "Stage",
    "StarBlend",
    "anomaly_registry",
    "register_anomaly",
]

RowTruth = tuple[dict[str, object], Windows]
"""One anomalous object's truth: its parameters (JSON-serialisable) and its windows."""


class Stage(IntEnum):
    """Where in the simulator's steps an anomaly class acts (in this order).

    * ``PARAMETERS``: before the galaxies are drawn; may impose physical parameters
      (``state.a_v_override``).
    * ``NARROW_LINES``: the restframe galaxies and their narrow-line tables are drawn
      (``state.cont``, ``state.line_*``, ``state.extra_*``); may rewrite the tables.
    * ``RESTFRAME``: may add restframe light (``state.cont``, ``state.added_lines``).
    * ``OBSERVED``: the galaxy is observed (``state.model``, ``state.amplitude``); may add
      observed-frame light, before the telluric absorption and the line spread.
    * ``DETECTOR``: after the noise and the flagged glitches; may change ``state.flux``
      only (unflagged instrumental artefacts).
    """

    PARAMETERS = 1
    NARROW_LINES = 2
    RESTFRAME = 3
    OBSERVED = 4
    DETECTOR = 5


class Anomaly:
    """One anomaly class, bound to a :class:`~speculum.sim.GalaxySimulator`.

    Subclasses set :attr:`stage`, implement :meth:`apply` and are registered with
    :func:`register_anomaly` (which sets :attr:`name`). Per-simulator precomputation
    (grids, windows) belongs in ``__init__``.

    Attributes:
        name: Registered name (the ``class`` truth of its objects).
        stage: Where in the simulator it acts.
        sim: The simulator it belongs to (grids, configuration and forward-model helpers).
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]

    def __init__(self, sim: GalaxySimulator) -> None:
        self.sim = sim

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        """Make objects ``rows`` of the block anomalous.

        Args:
            state: The block (see :class:`~speculum.sim.block.BlockState`); changed in place,
                on the anomaly's rows only, and only where ``state.show`` is true (the
                truth is drawn either way, from the same random stream).
            rows: Rows of this class, ``(k,)`` int64, possibly empty.
            gen: The block's generator (``state.gen``).

        Returns:
            ``k`` pairs ``(params, windows)`` in the order of ``rows``.
        """
        raise NotImplementedError


_REGISTRY: dict[str, type[Anomaly]] = {}

A = TypeVar("A", bound=type[Anomaly])


def register_anomaly(name: str) -> Callable[[A], A]:
    """Class decorator: register an :class:`Anomaly` subclass under ``name``.

    Args:
        name: The class label (``truth["class"]``); not ``"normal"``, not already taken.

    Raises:
        ValueError: ``name`` is taken or reserved.
        TypeError: The class is not an :class:`Anomaly` with a :class:`Stage`.
    """

    def deco(cls: A) -> A:
        if name == "normal" or name in _REGISTRY:
            taken = "reserved" if name == "normal" else f"taken by {_REGISTRY[name].__qualname__}"
            raise ValueError(f"register_anomaly: name {name!r} is {taken}")
        if not (isinstance(cls, type) and issubclass(cls, Anomaly) and isinstance(getattr(cls, "stage", None), Stage)):
            raise TypeError(f"register_anomaly({name!r}): expected an Anomaly subclass with a Stage, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def anomaly_registry() -> Mapping[str, type[Anomaly]]:
    """The registered anomaly classes by name, in registration order (read-only view)."""
    return MappingProxyType(_REGISTRY)


# ----------------------------------------------------------------------------- the classes
# Registration order fixes the class labels' order (ANOMALY_CLASSES) and, within a stage,
# the order of the random draws: keep it.

_BROAD_RATIO = torch.tensor([1.6 / 3.1, 0.25 / 3.1, 0.45 / 3.1, 1 / 3.1, 1.0])  # relative to Halpha
# observed-frame windows (A) of strong stellar features, for star + galaxy blends
STAR_FEATURES = ((3925, 3980), (4290, 4320), (5160, 5200), (5885, 5900), (6555, 6575), (7050, 7250), (8490, 8670))


@register_anomaly("agn")
class AGN(Anomaly):
    """Broad Balmer and Mg II lines (FWHM 2000-8000 km/s) plus a power-law continuum.

    The power law ``f (lambda / 5500 A)**-1.5`` (``f`` 0.2-0.8 of the normalised continuum)
    adds to the restframe continuum; broad Halpha has a restframe equivalent width of
    150-500 A against continuum plus power law, the other lines fixed ratios to it.
    Windows: +-1.5 FWHM around each broad line.
    """

    stage = Stage.RESTFRAME

    def __init__(self, sim: GalaxySimulator) -> None:
        super().__init__(sim)
        self.broad_wave = torch.tensor(list(BROAD_LINES.values()), dtype=torch.float64)

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        sim, z, cont = self.sim, state.z, state.cont
        broad_flux = torch.zeros(state.n, len(BROAD_LINES), dtype=torch.float64)
        broad_sigma = torch.full((state.n, len(BROAD_LINES)), 1000.0, dtype=torch.float64)
        out: list[RowTruth] = []
        for i in rows.tolist():
            frac = 0.2 + 0.8 * float(uniform(gen, 1))
            plaw = frac * (sim.wave_t.float() / 5500.0) ** -1.5
            fwhm = 2000.0 + 6000.0 * float(uniform(gen, 1))
            ew = 150.0 + 350.0 * float(uniform(gen, 1))
            broad_flux[i] = ew * float(cont[i, sim.idx_halpha] + plaw[sim.idx_halpha]) * _BROAD_RATIO.double()
            broad_sigma[i] = fwhm / 2.3548
            if state.show:
                cont[i] += plaw
            else:
                broad_flux[i] = 0.0
            params = {"fwhm_kms": round(fwhm, 1), "ew_halpha_broad": round(ew, 1), "power_law_fraction": round(frac, 3)}
            lam = self.broad_wave * (1 + float(z[i]))
            out.append((params, sim.window(lam * (1 - 1.5 * fwhm / C_KMS), lam * (1 + 1.5 * fwhm / C_KMS))))
        if len(rows):
            centre = self.broad_wave.expand(len(rows), -1)
            state.added_lines.append((rows, centre, broad_flux[rows], broad_sigma[rows]))
        return out


@register_anomaly("star_blend")
class StarBlend(Anomaly):
    """A MaStar star at ``z ~ 0`` (``|z| < 5e-4``) adding 20-60 % of the flux (observed frame).

    Windows: the strong stellar features of :data:`STAR_FEATURES`, the same for every blend.
    """

    stage = Stage.OBSERVED

    def __init__(self, sim: GalaxySimulator) -> None:
        super().__init__(sim)
        feats = torch.tensor(STAR_FEATURES, dtype=torch.float64)
        self.star_windows = sim.window(feats[:, 0], feats[:, 1])

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        if not len(rows):
            return []
        sim, k = self.sim, len(rows)
        star_id = torch.randint(0, len(sim.stars), (k,), generator=gen)
        z_star = (uniform(gen, k) - 0.5) * 1e-3
        star_obs, _ = sim.observe(sim.stars[star_id], z_star)
        frac = 0.2 + 0.4 * uniform(gen, k)
        scale = (frac / (1 - frac)) * state.amplitude[rows]
        if state.show:
            state.model[rows] += (star_obs * scale[:, None]).float()
        return [
            (
                {
                    "star_template": int(star_id[j]),
                    "flux_fraction": round(float(frac[j]), 3),
                    "z_star": round(float(z_star[j]), 6),
                },
                self.star_windows,
            )
            for j in range(k)
        ]


@register_anomaly("reddened")
class Reddened(Anomaly):
    """Heavy dust: ``A_V`` = 2.5-5 mag imposed on the galaxy (stars and, x 1 / 0.44, gas).

    Draws one ``A_V`` per object of the block (used on its own rows only). Window: every
    observed wavelength below restframe 4500 A.
    """

    stage = Stage.PARAMETERS

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        a_v_all = 2.5 + 2.5 * uniform(gen, state.n)
        a_v = torch.full((state.n,), float("nan"), dtype=torch.float64)
        a_v[rows] = a_v_all[rows]
        state.a_v_override = a_v if state.show else None
        return [
            (
                {"a_v": round(float(a_v[i]), 3)},
                self.sim.window(torch.tensor([0.0]), torch.tensor([4500.0 * (1 + float(state.z[i]))])),
            )
            for i in rows.tolist()
        ]


@register_anomaly("odd_lines")
class OddLines(Anomaly):
    """Extreme [O III]/Hbeta and [Ne III], or double-peaked narrow lines (half each).

    Double-peaked: every narrow line split into two peaks ``400-1000 km/s`` apart, together at
    least three times the lines of a galaxy with EW(Halpha) = 10 A. Extreme ratios:
    ``[O III] 5007 / Hbeta`` = 10-31.6 with [Ne III] and Case-B Halpha following. Draws the
    kind for every object of the block. Windows: the lines it rewrites, +-5 observed sigma.
    """

    stage = Stage.NARROW_LINES

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        sim, z, cont = self.sim, state.z, state.cont
        line_wave, line_flux, line_sigma = state.line_wave, state.line_flux, state.line_sigma
        extra_wave, extra_flux = state.extra_wave, state.extra_flux
        double = uniform(gen, state.n) < 0.5
        out: list[RowTruth] = []
        for i in rows.tolist():
            fl = line_flux[i]
            if double[i]:
                dv = 400.0 + 600.0 * float(uniform(gen, 1))
                shift = dv / 2 / C_KMS
                extra_wave[i] = sim.narrow_wave * (1 + shift)
                line_wave[i] = sim.narrow_wave * (1 - shift)
                # at least 3x the lines of a galaxy with EW(Halpha) = 10 A: visible at typical S/N
                boost = 3.0 * max(float(fl[11]), 10.0 * float(cont[i, sim.idx_halpha])) / max(float(fl[11]), 1e-6)
                line_flux[i] = fl * boost / 2
                extra_flux[i] = line_flux[i]
                params = {"kind": "double_peaked", "delta_v_kms": round(dv, 1)}
                affected = torch.arange(len(NARROW_LINES))
                half = (dv / 2 + 5 * sim.observed_line_sigma(float(line_sigma[i, 0]))) / C_KMS
            else:
                hb = max(float(fl[5]), 0.3 * float(cont[i, sim.idx_halpha]))
                ratio = 10 ** (1.0 + 0.5 * float(uniform(gen, 1)))
                line_flux[i, 5], line_flux[i, 11] = hb, 2.86 * hb
                line_flux[i, 7], line_flux[i, 6] = ratio * hb, ratio * hb / 2.98
                line_flux[i, 2] = 0.4 * ratio * hb
                params = {"kind": "extreme_ratios", "oiii_hbeta": round(ratio, 2)}
                affected = torch.tensor([2, 5, 6, 7, 11])  # [NeIII], Hbeta, [OIII] x2, Halpha: all it rewrites
                half = 5 * sim.observed_line_sigma(float(line_sigma[i, 0])) / C_KMS
            lam = sim.narrow_wave[affected] * (1 + float(z[i]))
            out.append((params, sim.window(lam * (1 - half) - 3, lam * (1 + half) + 3)))
        if not state.show:  # truth drawn, spectra untouched
            state.line_wave = sim.narrow_wave.expand(state.n, -1).clone()
            state.line_flux = state.galaxies["line_flux"].clone()
            state.extra_flux = torch.zeros_like(line_flux)
        return out


@register_anomaly("pair")
class Pair(Anomaly):
    """A second galaxy at a different redshift (``|dz| >= 0.02``) adding 30-60 % of the flux.

    Mostly behind (``z + 0.03 ... z + 0.3``, capped at the configuration's upper redshift),
    in front where that leaves less than 0.02. Windows: its strong lines ([O II], Hbeta,
    [O III] 5007, Halpha, [N II] 6583) +-10 A and its 4000 A break.
    """

    stage = Stage.OBSERVED
    _STRONG = (0, 1, 5, 7, 11, 12)

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        if not len(rows):
            return []
        sim, cfg, z, k = self.sim, self.sim.config, state.z, len(rows)
        z2 = (z[rows] + 0.03 + 0.27 * uniform(gen, k)).clamp(max=cfg.z_upper)
        z2 = torch.where(z2 - z[rows] < 0.02, z[rows] - 0.03 - 0.05 * uniform(gen, k), z2).clamp_min(0.0)
        g2 = sim.draw_galaxies(gen, k)
        m2, _ = sim.observe(g2["cont"], z2)
        sim.render_lines(
            m2,
            sim.narrow_wave.expand(k, -1),
            g2["line_flux"] * cfg.emission_lines,
            g2["sigma_gas"][:, None].expand(-1, len(NARROW_LINES)),
            z2,
        )
        frac = 0.3 + 0.3 * uniform(gen, k)
        scale = (frac / (1 - frac)) * state.amplitude[rows] / sim.observed_level(m2).clamp_min(1e-6)
        if state.show:
            state.model[rows] += m2 * scale[:, None].float()
        strong = torch.tensor(self._STRONG)
        out: list[RowTruth] = []
        for j in range(k):
            zz = float(z2[j])
            lam = sim.narrow_wave[strong] * (1 + zz)
            lo = torch.cat([lam - 10, torch.tensor([3850.0 * (1 + zz)], dtype=torch.float64)])
            hi = torch.cat([lam + 10, torch.tensor([4150.0 * (1 + zz)], dtype=torch.float64)])
            out.append(({"z2": round(zz, 5), "flux_fraction": round(float(frac[j]), 3)}, sim.window(lo, hi)))
        return out


@register_anomaly("artefact")
class Artefact(Anomaly):
    """An *unflagged* instrumental artefact on pixels the mask leaves usable (one third each).

    * spike: 3 pixels, a sky-subtraction residual at a faint, unmasked sky line or a hot
      pixel, ``artefact_min_sigma`` x 1-10 times the noise (70 % positive);
    * column: 5-20 pixels, ``artefact_min_sigma`` x 2-6 times the noise;
    * step: the flux drops by 15-40 % over 80-199 pixels, at least ``step_min_sigma`` times
      the noise (median over the step).

    Window: its pixels, widened by one pixel each side.
    """

    stage = Stage.DETECTOR

    def __init__(self, sim: GalaxySimulator) -> None:
        super().__init__(sim)
        self.starts = self._unmasked_starts()

    def _unmasked_starts(self) -> dict[str, torch.Tensor]:
        """First pixels of artefacts whose pixels the sky mask leaves usable.

        ``"spike"``: 3-pixel runs centred on faint sky lines below the instrument's masking
        threshold (sky-subtraction residuals); ``"hot"``: any clean 3-pixel run; ``w`` (an
        int as text, 5-20): clean runs of ``w`` pixels for bad columns.
        """
        inst = self.sim.instrument
        masked = np.concatenate([[0], np.cumsum(inst.sky_mask)])
        length = inst.n_pixels
        out: dict[str, torch.Tensor] = {}
        for w in (3, *range(5, 21)):
            starts = np.nonzero(masked[w:] - masked[:-w] == 0)[0]
            out["hot" if w == 3 else str(w)] = torch.from_numpy(starts[starts + w <= length])
        lines, inten = sky_lines(0.0)
        faint = lines[(inten < inst.sky_min_intensity) & (lines > inst.wave_obs[2]) & (lines < inst.wave_obs[-3])]
        p0 = np.array([inst.pixel_of(lam) - 1 for lam in faint], dtype=np.int64)
        p0 = p0[np.isin(p0, out["hot"].numpy())]
        out["spike"] = torch.from_numpy(p0) if len(p0) else out["hot"]
        return out

    def _pick(self, starts: torch.Tensor, gen: torch.Generator) -> int:
        return int(starts[int(torch.randint(0, len(starts), (1,), generator=gen))])

    def apply(self, state: BlockState, rows: torch.Tensor, gen: torch.Generator) -> list[RowTruth]:
        cfg, wave = self.sim.config, self.sim.wave_obs
        flux, sigma, model = state.flux, state.sigma, state.model
        length = model.shape[1]
        out: list[RowTruth] = []
        for i in rows.tolist():
            kind = ("spike", "column", "step")[int(torch.randint(0, 3, (1,), generator=gen))]
            if kind == "spike":  # sky-subtraction residual at a faint unmasked sky line, or a hot pixel
                at_sky = float(uniform(gen, 1)) < 0.5
                p0 = self._pick(self.starts["spike" if at_sky else "hot"], gen)
                w = 3
                sign = 1.0 if float(uniform(gen, 1)) < 0.7 else -1.0
                amp = sign * cfg.artefact_min_sigma * 10 ** float(uniform(gen, 1))
                delta = amp * sigma[i, p0 : p0 + w]
            elif kind == "column":
                w = int(torch.randint(5, 21, (1,), generator=gen))
                p0 = self._pick(self.starts[str(w)], gen)
                amp = cfg.artefact_min_sigma * (2.0 + 4.0 * float(uniform(gen, 1)))
                delta = amp * sigma[i, p0 : p0 + w]
            else:  # a flux step: the flux drops by a fraction, at least step_min_sigma deep (median)
                w = int(torch.randint(80, 200, (1,), generator=gen))
                p0 = int(torch.randint(0, length - w, (1,), generator=gen))
                seg, sig_seg = model[i, p0 : p0 + w], sigma[i, p0 : p0 + w]
                frac = 0.15 + 0.25 * float(uniform(gen, 1))
                need = cfg.step_min_sigma * float((sig_seg / seg.clamp_min(1e-12)).median())
                frac = min(max(frac, need), 1.0)
                amp = 1.0 - frac  # the flux is multiplied by amp over the step
                delta = -frac * seg
            if state.show:
                flux[i, p0 : p0 + w] += delta
            lo_w = float(wave[max(p0 - 1, 0)])
            hi_w = float(wave[min(p0 + w, length - 1)])
            params = {"kind": kind, "amplitude": round(amp, 3), "pixel": p0, "width_px": w}
            out.append((params, self.sim.window(torch.tensor([lo_w]), torch.tensor([hi_w]))))
        return out


ANOMALY_CLASSES: tuple[str, ...] = tuple(_REGISTRY)
"""Names of the built-in anomaly classes, in registration order (the default of ``SimConfig``)."""
