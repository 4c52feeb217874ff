#!/usr/bin/env python3
"""Write the small OCI image layout the quickstart copies: examples/quickstart/layout.

A real, runnable-looking image: tag `demo` is an OCI image index for linux/amd64 and
linux/arm64, each image one gzip'd tar layer (a /hello.txt) plus a layer both share, with valid
configs (diff_ids are the uncompressed tar digests). Referrers: an SPDX SBOM on the index, a
signature-style artifact on the amd64 image, and an attestation on the SBOM (a referrer of a
referrer). Output is deterministic (fixed mtimes, sorted keys), so rerunning changes nothing.

Usage: python3 scripts/make-quickstart-layout.py [output-dir]
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

CREATED = "2026-01-01T00:00:00Z"


def dumps(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    def __init__(self, root):
        self.root = root
        if os.path.exists(root):
            shutil.rmtree(root)
        os.makedirs(os.path.join(root, "blobs", "sha256"))

    def blob(self, data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return dict({"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}, **extra)

    def finish(self, manifests):
        with open(os.path.join(self.root, "oci-layout"), "wb") as f:
            f.write(dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(dumps(index))


def tar_layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    zipped = io.BytesIO()
    with gzip.GzipFile(fileobj=zipped, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes)
    return zipped.getvalue(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "examples", "quickstart", "layout")
    layout = Layout(out)
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"

    shared, shared_diff = tar_layer([("etc/ocync-quickstart", b"shared by every platform\n")])
    shared_desc = layout.blob(shared, layer_type)

    children = []
    for arch in ("amd64", "arm64"):
        own, own_diff = tar_layer([("hello.txt", f"hello from ocync on linux/{arch}\n".encode())])
        own_desc = layout.blob(own, layer_type)
        config = {
            "architecture": arch,
            "os": "linux",
            "created": CREATED,
            "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [shared_diff, own_diff]},
        }
        config_desc = layout.blob(dumps(config), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [shared_desc, own_desc],
        }
        children.append(
            layout.blob(
                dumps(manifest),
                "application/vnd.oci.image.manifest.v1+json",
                platform={"architecture": arch, "os": "linux"},
            )
        )

    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}
    index_desc = layout.blob(dumps(index), "application/vnd.oci.image.index.v1+json")
    subject = lambda d: {k: d[k] for k in ("mediaType", "digest", "size")}  # noqa: E731

    empty = layout.blob(b"{}", "application/vnd.oci.empty.v1+json")

    def artifact(artifact_type, payload, payload_type, about):
        body = layout.blob(payload, payload_type)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": empty,
            "layers": [body],
            "subject": subject(about),
            "annotations": {"org.opencontainers.image.created": CREATED},
        }
        return layout.blob(
            dumps(manifest),
            "application/vnd.oci.image.manifest.v1+json",
            artifactType=artifact_type,
            annotations={"org.opencontainers.image.created": CREATED},
        )

    sbom = artifact(
        "application/spdx+json",
        dumps({"spdxVersion": "SPDX-2.3", "name": "ocync-quickstart", "packages": [{"name": "hello", "versionInfo": "1.0"}]}),
        "application/spdx+json",
        index_desc,
    )
    signature = artifact(
        "application/vnd.example.signature",
        b"not a real signature: a stand-in that travels like one\n",
        "application/octet-stream",
        children[0],
    )
    attestation = artifact(
        "application/vnd.in-toto+json",
        dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://example.com/reviewed"}),
        "application/vnd.in-toto+json",
        sbom,
    )

    tagged = dict(index_desc, annotations={"org.opencontainers.image.ref.name": "demo"})
    layout.finish([tagged, sbom, signature, attestation])
    print(f"wrote {out}: demo = {index_desc['digest']}", file=sys.stderr)


if __name__ == "__main__":
    main()
