"""Application factory: one Flask app serving the dashboard IdP, DATEV, Lexware and the admin API."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider

from . import (
    admin,
    alarm_inbox,
    datev_authorize,
    datev_documents,
    datev_token_endpoints,
    faults,
    idp_dashboard,
    lexware,
    pages,
)
from .config import EmulatorConfig
from .context import EXTENSION_KEY, emulator_state
from .lexware_limits import TokenBuckets
from .request_ids import add_datev_headers, request_id
from .state import EmulatorState


def create_app(config: EmulatorConfig | None = None) -> Flask:
    config = config or EmulatorConfig.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_upload_bytes, config.lexware_max_file_bytes) * 2
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's default provider
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions[EXTENSION_KEY] = EmulatorState(config)
    registry = faults.FaultRegistry()
    app.extensions["token_desk_faults"] = registry
    app.extensions["token_desk_buckets"] = TokenBuckets(config.lexware_rate_per_second, config.lexware_burst)

    @app.before_request
    def _count_and_inject_faults():
        if not request.path.startswith("/_admin"):
            emulator_state().count_path(request.path)
        return faults.before_request(registry)

    app.after_request(faults.after_request)

    @app.errorhandler(405)
    def _method_not_allowed(error):
        response = jsonify({"request_id": request_id()})
        response.status_code = 405
        return add_datev_headers(response) if request.path.startswith("/platform") else response

    idp_dashboard.create_server(app, config)
    for blueprint in (idp_dashboard.bp, datev_authorize.bp, datev_token_endpoints.bp, datev_documents.bp,
                      lexware.bp, admin.bp, pages.bp, alarm_inbox.bp):
        app.register_blueprint(blueprint)
    return app
