"""What a name resolves to now, every address of it, for local resolution files
(`geodns hosts`): the same resolution as a DNS answer (CNAMEs followed, pools
decided from the snapshot), but every address a pool may answer instead of one
random draw, and whether a pool on the way is failing open (pure)."""

from __future__ import annotations

from typing import Any

from geodns.config.model import Config
from geodns.dns.answer import Client, resolve
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import PolicySource
from geodns.zone.names import NameSyntaxError, parse_name, to_text
from geodns.zone.zone import Address, RType

RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def local_answers(config: Config, snapshot: HealthSnapshot, names: list[str], client: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    who = Client(client, None, client)
    for text in names:
        try:
            qname = parse_name(text if text.endswith(".") else text + ".", None)
        except NameSyntaxError as exc:
            out[text] = {"error": f"bad name: {exc}"}
            continue
        source = PolicySource(config, snapshot)
        source.every_candidate = True
        found: dict[str, Any] = {"A": [], "AAAA": [], "ttl": None, "rcode": "NOERROR"}
        for rtype in (RType.A, RType.AAAA):
            answer = resolve(qname, int(rtype), config.zones, source, who)
            if answer.rcode:
                found["rcode"] = RCODES.get(answer.rcode, str(answer.rcode))
            for rr in answer.answer:
                if rr.rtype == rtype:
                    found[rtype.name] += [rd.text for rd in rr.rdatas if isinstance(rd, Address)]
                    found["ttl"] = rr.ttl if found["ttl"] is None else min(found["ttl"], rr.ttl)
        found["failing_open"] = sorted({d.pool.name for d in source.decided() if d.fallback is not None})
        out[to_text(qname)] = found
    return out
