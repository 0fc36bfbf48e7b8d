"""A small in-process Kubeflow Pipelines REST server (v2beta1) for client tests.

    with FakeKFP() as kfp:                                     # standalone: no identities, shared objects
        ...
    with FakeKFP(multi_user=True, identities={"Bearer t0k3n": {"ml-team"}}) as kfp:
        ...                                                    # multi-user: who may touch which namespace

It implements just the routes ``kfp.Client`` and the ``kfp`` CLI use to upload pipelines/versions,
start runs and show them, keeps what it receives (the uploaded YAML, run parameters, namespaces,
the identity headers) for assertions, and answers the way the real API server does
(kubeflow/pipelines backend/src/apiserver, 2.5-2.17): 404 for what does not exist, 409 for a
duplicate name, and in multi-user mode

- no identity (no known bearer token in ``Authorization``, no known ``name=value`` pair in
  ``Cookie``): 401 on the gRPC-gateway routes, 400 on the upload routes (the upload server
  reports every authorization failure as a bad request);
- a namespace the identity may not use: 403 (upload routes: 400); reading shared pipelines is
  open to every identity;
- ``require_namespace``: a shared pipeline upload is refused (REQUIRE_NAMESPACE_FOR_PIPELINES);
- an experiment or run without a namespace is refused (a run lives in its experiment's namespace).

Standalone mode ignores namespaces, as the server's ``ReplaceNamespace`` does.
"""
from __future__ import annotations

import json
import threading
import uuid
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CREATED = "2026-01-01T00:00:00Z"   # every object's created_at (the CLI prints it)


class Denied(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class FakeKFP:
    def __init__(self, tag_name: str = "2.5.0", multi_user: bool = False,
                 identities: dict[str, set[str]] | None = None, require_namespace: bool = False):
        self.tag_name = tag_name               # healthz's tag_name: the API server's build tag
        self.multi_user = multi_user
        self.identities = {key: set(spaces) for key, spaces in (identities or {}).items()}
        self.require_namespace = require_namespace
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.uploads: dict[str, str] = {}      # version id -> uploaded YAML text
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str | None] = []
        self.cookies: list[str | None] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _matches(item: dict, filter_json: str | None) -> bool:
        if not filter_json:
            return True
        preds = json.loads(filter_json).get("predicates", [])
        return all(item.get(p["key"]) == p.get("stringValue", p.get("string_value")) for p in preds)

    # -- multi-user authorization ------------------------------------------------------------

    def _namespaces_of(self, headers) -> set[str] | None:
        """The namespaces the request's identity may use; None: no identity."""
        found: set[str] | None = None
        auth = headers.get("Authorization")
        if auth in self.identities:
            found = set(self.identities[auth])
        for pair in (headers.get("Cookie") or "").split(";"):
            if pair.strip() in self.identities:
                found = (found or set()) | self.identities[pair.strip()]
        return found

    def _namespace(self, requested: str | None) -> str:
        return (requested or "") if self.multi_user else ""

    def _authorize(self, headers, namespace: str, write: bool, upload: bool = False) -> None:
        if not self.multi_user:
            return
        allowed = self._namespaces_of(headers)
        bad = 400 if upload else None
        if allowed is None:
            raise Denied(bad or 401, "Request header error: there is no user identity header.")
        if not namespace:
            if write and not upload and "kubeflow" not in allowed:   # 2.17: shared writes need the KFP namespace
                raise Denied(403, "Failed to access shared pipeline. Check if you have permission to create "
                                  "shared pipelines")
            return
        if namespace not in allowed:
            raise Denied(bad or 403, f"PermissionDenied: not authorized in namespace {namespace}")

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _uploaded_file(self) -> str:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = BytesParser(policy=default_policy).parsebytes(head + body)
                for part in message.iter_parts():
                    if part.get_param("name", header="content-disposition") == "uploadfile":
                        payload = part.get_payload(decode=True)
                        return payload.decode()
                raise ValueError("multipart body has no 'uploadfile' part")

            def _record(self, method: str, path: str) -> None:
                fake.requests.append((method, path))
                fake.auth_headers.append(self.headers.get("Authorization"))
                fake.cookies.append(self.headers.get("Cookie"))

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                self._record("GET", url.path)
                parts = url.path.strip("/").split("/")
                try:
                    return self._get(url, q, parts)
                except Denied as err:
                    return self._send(err.code, {"error": err.message, "code": 7})

            def _get(self, url, q, parts):
                if url.path == "/apis/v2beta1/healthz":
                    return self._send(200, {"commit_sha": "unknown", "tag_name": fake.tag_name,
                                            "multi_user": fake.multi_user})
                if url.path == "/apis/v2beta1/pipelines":
                    namespace = fake._namespace(q.get("namespace"))
                    fake._authorize(self.headers, namespace, write=False)
                    found = [p for p in fake.pipelines.values()
                             if p["namespace"] == namespace and fake._matches(p, q.get("filter"))]
                    return self._send(200, {"pipelines": found, "total_size": len(found)} if found else {})
                if parts[:3] == ["apis", "v2beta1", "pipelines"] and parts[-1] == "versions":
                    pipeline = fake.pipelines.get(parts[3])
                    if pipeline is None:
                        return self._send(404, {"error": "no such pipeline", "code": 5})
                    fake._authorize(self.headers, pipeline["namespace"], write=False)
                    found = [v for v in fake.versions.get(parts[3], []) if fake._matches(v, q.get("filter"))]
                    return self._send(200, {"pipeline_versions": found} if found else {})
                if url.path == "/apis/v2beta1/experiments":
                    namespace = fake._namespace(q.get("namespace"))
                    fake._authorize(self.headers, namespace, write=False)
                    found = [e for e in fake.experiments.values()
                             if e["namespace"] == namespace and fake._matches(e, q.get("filter"))]
                    return self._send(200, {"experiments": found} if found else {})
                if url.path == "/apis/v2beta1/runs":
                    namespace = fake._namespace(q.get("namespace"))
                    fake._authorize(self.headers, namespace, write=False)
                    found = [r for r in fake.runs if r.get("namespace", "") == namespace]
                    return self._send(200, {"runs": found, "total_size": len(found)} if found else {})
                if parts[:3] == ["apis", "v2beta1", "runs"] and len(parts) == 4:
                    found = [r for r in fake.runs if r["run_id"] == parts[3]]
                    if found:
                        fake._authorize(self.headers, found[0].get("namespace", ""), write=False)
                    return self._send(200, found[0]) if found else self._send(404, {"error": "no run", "code": 5})
                return self._send(404, {"error": f"no route {url.path}", "code": 5})

            def do_POST(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                self._record("POST", url.path)
                try:
                    return self._post(url, q)
                except Denied as err:
                    return self._send(err.code, {"error": err.message, "code": 7})

            def _post(self, url, q):
                if url.path == "/apis/v2beta1/pipelines/upload":
                    text = self._uploaded_file()
                    namespace = fake._namespace(q.get("namespace"))
                    if fake.multi_user and fake.require_namespace and not namespace:
                        return self._send(400, {"error": "Namespace is required for pipeline operations", "code": 3})
                    fake._authorize(self.headers, namespace, write=True, upload=True)
                    if any(p["display_name"] == q["name"] and p["namespace"] == namespace
                           for p in fake.pipelines.values()):
                        return self._send(409, {"error": "pipeline exists", "code": 6})
                    pid = str(uuid.uuid4())
                    fake.pipelines[pid] = {"pipeline_id": pid, "display_name": q["name"], "namespace": namespace,
                                           "description": q.get("description", ""), "created_at": CREATED}
                    vid = str(uuid.uuid4())   # the real server makes a first version too
                    fake.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": vid,
                                           "display_name": q["name"], "description": q.get("description", ""),
                                           "created_at": CREATED}]
                    fake.uploads[vid] = text
                    return self._send(200, fake.pipelines[pid])
                if url.path == "/apis/v2beta1/pipelines/upload_version":
                    text = self._uploaded_file()
                    pid = q["pipelineid"]
                    if pid not in fake.pipelines:
                        return self._send(404, {"error": "no such pipeline", "code": 5})
                    fake._authorize(self.headers, fake.pipelines[pid]["namespace"], write=True, upload=True)
                    if any(v["display_name"] == q["name"] for v in fake.versions[pid]):
                        return self._send(409, {"error": "version exists", "code": 6})
                    vid = str(uuid.uuid4())
                    fake.versions[pid].append({"pipeline_id": pid, "pipeline_version_id": vid,
                                               "display_name": q["name"], "description": q.get("description", ""),
                                               "created_at": CREATED})
                    fake.uploads[vid] = text
                    return self._send(200, fake.versions[pid][-1])
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if url.path == "/apis/v2beta1/experiments":
                    namespace = fake._namespace(body.get("namespace"))
                    if fake.multi_user and not namespace:
                        return self._send(400, {"error": "Experiment namespace is required in multi-user mode",
                                                "code": 3})
                    fake._authorize(self.headers, namespace, write=True)
                    eid = str(uuid.uuid4())
                    fake.experiments[eid] = {"experiment_id": eid, "display_name": body["display_name"],
                                             "namespace": namespace, "created_at": CREATED}
                    return self._send(200, fake.experiments[eid])
                if url.path == "/apis/v2beta1/runs":
                    experiment = fake.experiments.get(body.get("experiment_id", ""))
                    if fake.multi_user and experiment is None:
                        return self._send(400, {"error": "Resource cannot have an empty namespace and experiment "
                                                         "id in multi-user mode", "code": 3})
                    namespace = experiment["namespace"] if experiment else ""
                    fake._authorize(self.headers, namespace, write=True)
                    reference = body.get("pipeline_version_reference") or {}
                    if reference.get("pipeline_id") and reference["pipeline_id"] not in fake.pipelines:
                        return self._send(404, {"error": "no such pipeline", "code": 5})
                    run = {"run_id": str(uuid.uuid4()), "created_at": CREATED, "state": "PENDING", **body,
                           "namespace": namespace}
                    fake.runs.append(run)
                    return self._send(200, run)
                return self._send(404, {"error": f"no route {url.path}", "code": 5})

        return Handler
