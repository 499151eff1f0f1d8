"""The abuse rules, their defaults, and how settings override them.

Each rule counts something per user (or per address) over a sliding window and trips when
the count goes over ``limit``. Its policy says what happens then:

- ``flag``: accept, and record a flag for an admin to look at;
- ``block``: refuse the request (velocity rules) and flag;
- ``suspend``: refuse, flag, and suspend the user from scoring until an admin lifts it;
- ``off``: ignore the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from scoreboard.config import RuleSetting


class Policy(StrEnum):
    OFF = "off"
    FLAG = "flag"
    BLOCK = "block"
    SUSPEND = "suspend"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    limit: int
    window: float
    policy: Policy
    description: str


DEFAULT_RULES = {
    rule.name: rule
    for rule in (
        Rule("points_per_minute", 1_000, 60, Policy.BLOCK, "points scored in a minute"),
        Rule("points_per_hour", 20_000, 3_600, Policy.FLAG, "points scored in an hour"),
        Rule("actions_per_minute", 30, 60, Policy.BLOCK, "actions completed in a minute"),
        Rule("early_completion", 3, 600, Policy.FLAG, "completions tried before notBefore"),
        Rule("ticket_replay", 3, 600, Policy.FLAG, "used tickets sent again"),
        Rule("forged_ticket", 0, 600, Policy.FLAG, "tickets this service never issued"),
        Rule("timestamp_skew", 5, 600, Policy.FLAG, "timestamps outside the allowed window"),
        Rule("auth_failures", 20, 60, Policy.FLAG, "refused tokens from one address"),
    )
}


def configured_rules(overrides: dict[str, RuleSetting]) -> dict[str, Rule]:
    unknown = set(overrides) - set(DEFAULT_RULES)
    if unknown:
        raise ValueError(
            f"SCOREBOARD_ABUSE_RULES names unknown rules {sorted(unknown)}; "
            f"known: {sorted(DEFAULT_RULES)}"
        )
    rules = dict(DEFAULT_RULES)
    for name, setting in overrides.items():
        changes = {k: v for k, v in setting.model_dump().items() if v is not None}
        if "policy" in changes:
            changes["policy"] = Policy(changes["policy"])
        rules[name] = replace(rules[name], **changes)
    return rules
