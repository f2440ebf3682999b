"""The stochasticity audit of a loaded network (:mod:`app.engine.audit`), in the card's terms:
what it found and what the card acknowledges (``unsampled: [module names]``). A module found
random that mcdrop neither samples nor sees acknowledged is a load error naming it; a reference
that varies beyond mcdrop's passes with no module to blame is a warning the load logs, the
metadata lists and ``check-model`` fails on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import Tensor, nn

from app.engine.audit import (
    RANDOM_IN_EVAL,
    AuditReport,
    Finding,
    SampleRunError,
    audit_model,
    stochastic_modules,
)
from app.engine.sampling import Sampler
from app.errors import ModelLoadError
from app.registry.huggingface import attention_sites
from app.registry.network import Network

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unsampled:
    """A source of randomness mcdrop does not sample (the metadata's listing)."""

    name: str
    kind: str
    reason: str
    acknowledged: bool
    """The card names it in ``unsampled``: left off on purpose."""


@dataclass(frozen=True)
class Audit:
    """The audit's report with the card's acknowledgements applied."""

    report: AuditReport
    unsampled: list[Unsampled] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """A reference that varies beyond mcdrop's passes (no module found to blame)."""


def audit_network(network: Network, sampler: Sampler) -> Audit:
    """Run the audit on the network's probe rows; ModelLoadError naming every random module
    neither sampled nor acknowledged; log and return the warnings."""
    acknowledged = _acknowledged(network)
    known, frozen = _site_modules(network)
    try:
        report = audit_model(
            network.module, sampler, network.probe, known=known, frozen=frozen | acknowledged
        )
    except SampleRunError as exc:
        raise ModelLoadError(
            f"model '{network.card.name}': a sample run on the probe rows failed: {exc}"
        ) from exc
    unsampled = [
        Unsampled(f.name, f.kind, f.reason, f.name in acknowledged) for f in report.findings
    ]
    refused = [_finding_warning(f) for f in report.findings if f.name not in acknowledged]
    if refused:
        # Never served silently off: sample it, or say in the card that it is left off.
        raise ModelLoadError(f"model '{network.card.name}': " + "; ".join(refused))
    warnings: list[str] = []
    gap = report.gap
    if gap is not None and gap.excess:
        warnings.append(
            f"the model's own torch MC dropout varies more than mcdrop's passes on the probe "
            f"(std {gap.reference**0.5:.4g} vs {gap.sampled**0.5:.4g}, {gap.z:.1f} standard "
            "errors): a source of randomness is not sampled"
        )
    if report.note is not None:
        logger.info("model '%s': audit: %s", network.card.name, report.note)
    return Audit(report, unsampled, warnings)


def refuse_without_sampled_sites(network_module: nn.Module, probe: Tensor, name: str) -> None:
    """For a model with no dropout site to sample: raise naming its random modules, if any."""
    findings = stochastic_modules(network_module, probe)
    if not findings:
        return
    listed = "; ".join(f"{f.label}: {_why(f)}" for f in findings)
    raise ModelLoadError(
        f"model '{name}' has no dropout site mcdrop can sample, yet it is random: {listed}. "
        "Use nn.Dropout modules (or F.dropout in code torch.fx can trace)"
    )


ROOT = "forward"
"""The card's name, in ``unsampled``, for the model's own forward (the root module)."""


def _finding_warning(finding: Finding) -> str:
    as_is = (
        ""
        if finding.scripted or not finding.name
        else f"sample it as it is with mc_dropout: {{modules: [{finding.name}]}}, "
    )
    return (
        f"{finding.label} is a source of randomness mcdrop does not sample ({_why(finding)}): "
        "served so, the answers would miss its uncertainty. Use nn.Dropout modules (or "
        f"F.dropout in code torch.fx can trace), {as_is}or acknowledge it in the card with "
        f"unsampled: [{finding.name or ROOT}]"
    )


def _why(finding: Finding) -> str:
    if finding.calls_dropout:
        mode = "even in eval mode" if finding.reason == RANDOM_IN_EVAL else "in training mode"
        return f"its forward calls functional dropout in code torch.fx cannot trace, {mode}"
    if finding.reason == RANDOM_IN_EVAL:
        return "its forward draws random numbers even in eval mode, unseeded"
    return "its forward is random in training mode, and mcdrop keeps the model in eval"


def _acknowledged(network: Network) -> set[str]:
    """The card's ``unsampled`` names, each checked to be a module of the network."""
    names = {
        "" if name == ROOT else network.module_prefix + name for name in network.card.unsampled
    }
    modules = {name for name, _ in network.module.named_modules()}
    unknown = sorted(name for name in names if name not in modules)
    if unknown:
        raise ModelLoadError(
            f"model '{network.card.name}': unsampled names {', '.join(unknown)}, which is not "
            "a module of the model"
        )
    return names


def _site_modules(network: Network) -> tuple[set[str], set[str]]:
    """(modules mcdrop samples or leaves off on purpose, modules left off on purpose): the
    dropout sites and the owners of functional ones, in the network module's names."""
    prefix = network.module_prefix
    known: set[str] = set()
    frozen: set[str] = set()
    for site in network.sites:
        owner = network.site_owners.get(site.name, site.name)
        for name in {site.name, owner}:
            known.add(prefix + name if name else name)
            if not site.sampled:
                frozen.add(prefix + name if name else name)
    # An attention module reads self.training only to hand its dropout site's rate to the
    # attention function: its randomness is that site's (sampled, or off by the card's choice).
    for name in attention_sites(network.module):
        parent = name.rsplit(".", 1)[0]
        if name in known:
            known.add(parent)
        if name in frozen:
            frozen.add(parent)
    return known, frozen
