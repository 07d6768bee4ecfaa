"""``vitaltwin dashboards push``: install the Grafana dashboards into an existing Grafana.

Uses ``grafana-client``. The dashboards go into one folder (uid ``vitaltwin``), overwriting
earlier versions (their uids are fixed, so a push is idempotent). They query the InfluxDB
datasource with uid ``vitaltwin-influx``: give ``--influx-url`` (and the token in
``VITALTWIN_INFLUX_TOKEN``) to create or update it too; otherwise it must exist already (with
``docker compose up`` it is provisioned from dashboards/grafana/provisioning).

The Grafana token (a service-account token with the Editor role, or admin for the datasource)
can be given in ``VITALTWIN_GRAFANA_TOKEN`` instead of ``--token``, keeping it out of the
process list and shell history.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

FOLDER_UID = "vitaltwin"
FOLDER_TITLE = "vitaltwin"
ENV_TOKEN = "VITALTWIN_GRAFANA_TOKEN"


def register(sub: Any) -> None:
    p = sub.add_parser("dashboards", help="Grafana dashboards as code")
    actions = p.add_subparsers(dest="dashboards_action", required=True, metavar="ACTION")
    push = actions.add_parser("push", help="install the dashboards into a Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://localhost:3000")
    push.add_argument(
        "--token", default=os.environ.get(ENV_TOKEN), help=f"Grafana API token (env {ENV_TOKEN})"
    )
    push.add_argument("--influx-url", help="also create/update the InfluxDB datasource")
    push.add_argument("--influx-org", default=os.environ.get("VITALTWIN_INFLUX_ORG", "vitaltwin"))
    push.add_argument(
        "--influx-bucket", default=os.environ.get("VITALTWIN_INFLUX_BUCKET", "vitaltwin")
    )
    push.add_argument("--timeout", type=float, default=10.0)
    push.set_defaults(func=run_push)
    listing = actions.add_parser("list", help="the dashboards this version ships")
    listing.set_defaults(func=run_list)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(message: str) -> int:
    sys.stderr.write(f"vitaltwin dashboards: {message}\n")
    return 2


def run_list(args: argparse.Namespace) -> int:
    from dashboards import grafana_dashboards

    for stem, dash in grafana_dashboards().items():
        _out(f"{dash['uid']:<28} {dash['title']}  ({stem}.json, {len(dash['panels'])} panels)")
    return 0


def datasource_payload(url: str, org: str, bucket: str, token: str) -> dict[str, Any]:
    """The same datasource the provisioning file declares."""
    from dashboards import DATASOURCE_UID

    return {
        "name": "vitaltwin-influxdb",
        "uid": DATASOURCE_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": url,
        "jsonData": {"version": "Flux", "organization": org, "defaultBucket": bucket},
        "secureJsonData": {"token": token},
    }


def push(api: Any, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Ensure the folder, then create-or-overwrite every dashboard; return their uids."""
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    pushed = []
    for dash in dashboards.values():
        body = {k: v for k, v in dash.items() if k != "id"}  # Grafana assigns ids per instance
        api.dashboard.update_dashboard(
            {
                "dashboard": body,
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": "vitaltwin dashboards push",
            }
        )
        pushed.append(dash["uid"])
    return pushed


def run_push(args: argparse.Namespace) -> int:
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    from dashboards import DATASOURCE_UID, grafana_dashboards

    if not args.token:
        return _err(f"a Grafana API token is required: --token or {ENV_TOKEN}")
    api = GrafanaApi.from_url(args.url, credential=args.token, timeout=args.timeout)
    try:
        if args.influx_url:
            influx_token = os.environ.get("VITALTWIN_INFLUX_TOKEN")
            if not influx_token:
                return _err("--influx-url needs the InfluxDB token in VITALTWIN_INFLUX_TOKEN")
            payload = datasource_payload(
                args.influx_url, args.influx_org, args.influx_bucket, influx_token
            )
            try:
                api.datasource.get_datasource_by_uid(DATASOURCE_UID)
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, payload)
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                api.datasource.create_datasource(payload)
            _out(f"datasource {DATASOURCE_UID} -> {args.influx_url}")
        uids = push(api, grafana_dashboards())
    except GrafanaException as exc:
        # The message carries Grafana's answer, never the token.
        return _err(f"Grafana refused: {exc}")
    except OSError as exc:
        return _err(f"cannot reach {args.url}: {type(exc).__name__}")
    for uid in uids:
        _out(f"pushed {uid} -> {args.url.rstrip('/')}/d/{uid}")
    return 0
