"""What to print when the client cannot reach an app through the edge: which certificate the
edge serves (and whether the CA file the client trusts issued it), what listens on the edge,
and the edge's log. CI once saw certificate errors and refused connections that never
happened on a developer machine; this turns the next one into a finding."""

from __future__ import annotations

from pathlib import Path


def edge_report(sim, host: str, ca: str, edge_log: Path | None = None) -> str:
    addr = sim.addr("edge")
    served = sim.run("client", "sh", "-c", f"openssl s_client -connect {addr}:443 -servername {host} "
                     f"-CAfile {ca} </dev/null 2>&1 | grep -E 'issuer=|subject=|Verify return|errno|refused'",
                     check=False).stdout.strip()
    trusted = sim.run("client", "openssl", "x509", "-in", ca, "-noout", "-subject", "-fingerprint",
                      check=False)
    listening = sim.run("edge", "ss", "-ltnp", check=False).stdout.strip()
    tail = ""
    if edge_log and Path(edge_log).exists():
        tail = "\n".join(Path(edge_log).read_text(errors="replace").splitlines()[-25:])
    return (f"\n--- served to the client for {host}:\n{served}\n--- the CA file {ca}:\n"
            f"{(trusted.stdout or trusted.stderr).strip()}\n--- listening on the edge:\n{listening}\n"
            f"--- edge log tail ({edge_log}):\n{tail}")
