"""A small in-process Kubeflow Pipelines REST server (v2beta1) for client tests.

It implements just the routes ``kfp.Client`` and the ``kfp`` CLI use to upload
pipelines/versions, start runs and show them, keeps what it receives (the uploaded YAML, run
parameters) for assertions, and answers 404/409 the way the real API server does.
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


class FakeKFP:
    def __init__(self, tag_name: str = "2.5.0"):
        self.tag_name = tag_name               # healthz's tag_name: the API server's build tag
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.uploads: dict[str, str] = {}      # version id -> uploaded YAML text
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str | None] = []
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

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(("GET", url.path))
                fake.auth_headers.append(self.headers.get("Authorization"))
                parts = url.path.strip("/").split("/")
                if url.path == "/apis/v2beta1/healthz":
                    return self._send(200, {"commit_sha": "unknown", "tag_name": fake.tag_name,
                                            "multi_user": False})
                if url.path == "/apis/v2beta1/pipelines":
                    found = [p for p in fake.pipelines.values() if fake._matches(p, q.get("filter"))]
                    return self._send(200, {"pipelines": found, "total_size": len(found)} if found else {})
                if parts[:3] == ["apis", "v2beta1", "pipelines"] and parts[-1] == "versions":
                    found = [v for v in fake.versions.get(parts[3], []) if fake._matches(v, q.get("filter"))]
                    return self._send(200, {"pipeline_versions": found} if found else {})
                if url.path == "/apis/v2beta1/experiments":
                    found = [e for e in fake.experiments.values() if fake._matches(e, q.get("filter"))]
                    return self._send(200, {"experiments": found} if found else {})
                if parts[:3] == ["apis", "v2beta1", "runs"] and len(parts) == 4:
                    found = [r for r in fake.runs if r["run_id"] == parts[3]]
                    return self._send(200, found[0]) if found else self._send(404, {"error": "no run", "code": 5})
                return self._send(404, {"error": f"no route {url.path}", "code": 5})

            def do_POST(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(("POST", url.path))
                fake.auth_headers.append(self.headers.get("Authorization"))
                if url.path == "/apis/v2beta1/pipelines/upload":
                    text = self._uploaded_file()
                    if any(p["display_name"] == q["name"] for p in fake.pipelines.values()):
                        return self._send(409, {"error": "pipeline exists", "code": 6})
                    pid = str(uuid.uuid4())
                    fake.pipelines[pid] = {"pipeline_id": pid, "display_name": q["name"],
                                           "description": q.get("description", ""), "created_at": CREATED}
                    vid = str(uuid.uuid4())   # the real server makes a first version too
                    fake.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": vid,
                                           "display_name": q["name"], "created_at": CREATED}]
                    fake.uploads[vid] = text
                    return self._send(200, fake.pipelines[pid])
                if url.path == "/apis/v2beta1/pipelines/upload_version":
                    text = self._uploaded_file()
                    pid = q["pipelineid"]
                    if pid not in fake.pipelines:
                        return self._send(404, {"error": "no such pipeline", "code": 5})
                    if any(v["display_name"] == q["name"] for v in fake.versions[pid]):
                        return self._send(409, {"error": "version exists", "code": 6})
                    vid = str(uuid.uuid4())
                    fake.versions[pid].append({"pipeline_id": pid, "pipeline_version_id": vid,
                                               "display_name": q["name"], "created_at": CREATED})
                    fake.uploads[vid] = text
                    return self._send(200, fake.versions[pid][-1])
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if url.path == "/apis/v2beta1/experiments":
                    eid = str(uuid.uuid4())
                    fake.experiments[eid] = {"experiment_id": eid, "display_name": body["display_name"],
                                             "created_at": CREATED}
                    return self._send(200, fake.experiments[eid])
                if url.path == "/apis/v2beta1/runs":
                    run = {"run_id": str(uuid.uuid4()), "created_at": CREATED, "state": "PENDING", **body}
                    fake.runs.append(run)
                    return self._send(200, run)
                return self._send(404, {"error": f"no route {url.path}", "code": 5})

        return Handler
