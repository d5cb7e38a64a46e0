"""``obliviate sign`` and ``obliviate verify``: C2PA sidecar manifests of a finished run.

Registered in :mod:`obliviate.cli` with ``add_provenance_parsers(subparsers)``.
"""

from __future__ import annotations

import sys


def add_provenance_parsers(subparsers) -> None:
    """Add the ``sign`` and ``verify`` commands to an argparse subparsers object."""
    p = subparsers.add_parser("sign", help="sign a finished run's weight files with C2PA sidecar manifests "
                                           "(needs obliviate[c2pa])")
    p.add_argument("run", help="run folder (its manifest.json must say complete)")
    p.add_argument("--cert", required=True, metavar="CHAIN.pem",
                   help="signing certificate followed by its chain (PEM), with a C2PA key usage")
    p.add_argument("--key", required=True, metavar="KEY.pem", help="the certificate's private key (PEM, unencrypted)")
    p.add_argument("--tsa-url", metavar="URL", help="RFC 3161 time-stamp authority (the signature outlives the "
                                                    "certificate)")
    p.set_defaults(func=cmd_sign)

    p = subparsers.add_parser("verify", help="check a run's C2PA sidecar manifests against its files, "
                                             "state.json and manifest.json (needs obliviate[c2pa])")
    p.add_argument("run", help="run folder")
    p.add_argument("--trust-anchors", metavar="CA.pem",
                   help="certificates to trust (PEM); without it the certificate is not checked")
    p.set_defaults(func=cmd_verify)


def cmd_sign(args) -> int:
    """Sign a finished run; returns the exit code."""
    from obliviate.provenance import sign_run

    for sidecar in sign_run(args.run, args.cert, args.key, tsa_url=args.tsa_url):
        print(f"signed {sidecar.removesuffix('.c2pa')}: {sidecar}")
    return 0


def cmd_verify(args) -> int:
    """Verify a run's signatures, one line per weight file; 0 when every file is ok, else 1."""
    from obliviate.provenance import MISSING, OK, verify_run

    checks = verify_run(args.run, trust_anchors=args.trust_anchors)
    for check in checks:
        print(check.line())
    bad = [c for c in checks if c.status != OK]
    if bad and all(c.status == MISSING for c in checks):
        print(f"verification failed: '{args.run}' is not signed: sign it with `obliviate sign {args.run} "
              "--cert CHAIN.pem --key KEY.pem`", file=sys.stderr)
    elif bad:
        print(f"verification failed: {len(bad)} of {len(checks)} files ({', '.join(sorted({c.status for c in bad}))})",
              file=sys.stderr)
    return 1 if bad else 0
