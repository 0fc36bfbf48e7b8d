"""Store URIs: which backend, where.

    store = open_store("file:///data/store")      # also "/data/store" or "relative/dir"
    store = open_store("s3://artifacts/team-a")   # endpoint and keys from the environment
    store, name = resolve("s3://artifacts/team-a/curated/run1")
    # -> (store at s3://artifacts/team-a/curated, "run1")

``resolve`` splits an artifact URI into its parent (the store root) and its last segment
(the name). That is the same artifact as ``open_store(".../team-a").read_manifest(
"curated/run1")``: everything of an artifact lives under ``<root>/<name>/``, so any parent
works as a root. A stage handed one URI can therefore read or write it without knowing
where the store was rooted.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from diffucoder.store.artifacts import ArtifactStore
from diffucoder.store.errors import StoreError
from diffucoder.store.local import LocalBackend
from diffucoder.store.manifest import check_name
from diffucoder.store.s3 import S3Backend
from diffucoder.store.s3_config import S3Credentials, S3Options

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def open_store(uri: str | Path, *, s3: S3Options | None = None,
               credentials: S3Credentials | None = None, workers: int = 4,
               gc_grace: float = 3600.0) -> ArtifactStore:
    """The store rooted at ``uri``: ``file:///abs``, a plain path, or ``s3://bucket[/prefix]``.

    ``s3``/``credentials`` override what ``S3Options.from_env``/``S3Credentials.from_env``
    would find; nothing touches the network until the first operation.
    """
    scheme, location = _split(uri)
    if scheme == "s3":
        bucket, _, prefix = location.partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise StoreError(f"bad S3 URI {str(uri)!r}: bucket {bucket!r} is not a valid "
                             "bucket name (3-63 of a-z 0-9 . -)")
        if prefix.strip("/"):
            _check_prefix(prefix.strip("/"), uri)
        backend = S3Backend(bucket, prefix, s3 if s3 is not None else S3Options.from_env(),
                            credentials, max_connections=max(10, workers * 2))
    else:
        backend = LocalBackend(Path(location))
    return ArtifactStore(backend, workers=workers, gc_grace=gc_grace)


def resolve(uri: str | Path, **options) -> tuple[ArtifactStore, str]:
    """(store rooted at the parent of ``uri``, last segment as the artifact name)."""
    scheme, location = _split(uri)
    location = location.rstrip("/")
    if scheme == "s3":
        bucket, _, key = location.partition("/")
        if not key:
            raise StoreError(f"artifact URI {str(uri)!r} names a bucket, not an artifact "
                             "(expected s3://bucket/[prefix/]name)")
        parent, _, name = key.rpartition("/")
        root = f"s3://{bucket}/{parent}" if parent else f"s3://{bucket}"
    else:
        path = Path(location)
        if path.parent == path:
            raise StoreError(f"artifact URI {str(uri)!r} names a filesystem root, "
                             "not an artifact")
        root, name = str(path.parent), path.name
    check_name(name)
    return open_store(root, **options), name


def _split(uri: str | Path) -> tuple[str, str]:
    """('s3', 'bucket/prefix') or ('file', '/abs/path') for any accepted spelling."""
    if isinstance(uri, Path):
        return "file", str(uri.absolute())
    if not isinstance(uri, str) or not uri.strip():
        raise StoreError(f"store URI must be a non-empty string, got {uri!r}")
    if "://" not in uri:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) and not Path(uri).exists():
            raise StoreError(f"bad store URI {uri!r}: use file:///abs/path, s3://bucket/prefix "
                             "or a plain path")
        return "file", str(Path(uri).absolute())
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise StoreError(f"bad store URI {uri!r}: '?' and '#' are not allowed")
    if scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"bad S3 URI {uri!r}: no bucket (expected s3://bucket/prefix)")
        return "s3", f"{parts.netloc}{parts.path}"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"bad file URI {uri!r}: host {parts.netloc!r} is not supported "
                             "(use file:///absolute/path)")
        if not parts.path.startswith("/"):
            raise StoreError(f"bad file URI {uri!r}: path must be absolute")
        return "file", unquote(parts.path)
    raise StoreError(f"unsupported store URI scheme {scheme!r} in {uri!r} "
                     "(supported: file://, s3://, or a plain path)")


def _check_prefix(prefix: str, uri: str | Path) -> None:
    try:
        check_name(prefix)
    except StoreError:
        raise StoreError(f"bad S3 URI {str(uri)!r}: prefix {prefix!r} has an empty segment "
                         "or one starting with '.'") from None
