#!/usr/bin/env python3
"""Checks what `make images` promises about an image, reading only files (no container runtime).

    verify_archive.py elf BINARY ARCH
        BINARY is an ELF executable for ARCH (amd64 | arm64) that loads no shared library.

    verify_archive.py archive ARCHIVE --reference R --title T --version V --arch A
                      --entrypoint /floe [--expose 9092/tcp ...] [--rootfs DIR]
        ARCHIVE (an oci-archive: tar of an OCI image layout) holds one image, named R in its index,
        for linux/A, whose user is numeric and not root, whose entrypoint is exactly [/floe] with
        no command, whose labels carry title, version and the Apache-2.0 licence, whose exposed
        ports are exactly --expose, and whose files are exactly the entrypoint binary (static,
        root-owned, executable) and the CA bundle: no shell, no libc. --rootfs DIR also unpacks
        those files into DIR.

Prints one summary line; exits 1 with "failed to verify ...: <reason>" on the first broken promise.
Standard library only, so it runs wherever python3 does.
"""

import argparse
import hashlib
import io
import json
import os
import posixpath
import struct
import sys
import tarfile

ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
PT_DYNAMIC, PT_INTERP = 2, 3
DT_NULL, DT_NEEDED = 0, 1
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
# Directories the CA bundle's path creates; everything else in the image is a file we put there.
ALLOWED_DIRECTORIES = {"etc", "etc/ssl", "etc/ssl/certs"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class VerifyError(Exception):
    pass


def check_static_elf(data, arch):
    """Raises VerifyError unless `data` is a 64-bit little-endian ELF executable for `arch` with no
    program interpreter and no DT_NEEDED entry (a static or static-pie executable)."""
    if data[:4] != b"\x7fELF":
        raise VerifyError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise VerifyError("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type not in (2, 3):  # ET_EXEC, ET_DYN (static-pie)
        raise VerifyError(f"ELF type {e_type} is not an executable")
    if e_machine != ELF_MACHINE[arch]:
        raise VerifyError(f"ELF machine {e_machine} is not {arch} ({ELF_MACHINE[arch]})")
    (e_phoff,) = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    for index in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + index * e_phentsize
        )
        if p_type == PT_INTERP:
            interpreter = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
            raise VerifyError(f"dynamically linked (program interpreter {interpreter})")
        if p_type == PT_DYNAMIC:
            # A static-pie keeps a dynamic section for its own relocations; it must need nothing.
            for entry in range(p_offset, p_offset + p_filesz, 16):
                tag, _value = struct.unpack_from("<qQ", data, entry)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    raise VerifyError("dynamically linked (needs shared libraries)")


def read_blob(archive, digest):
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256":
        raise VerifyError(f"unexpected digest algorithm in {digest}")
    try:
        data = archive.extractfile(f"blobs/sha256/{hex_digest}").read()
    except KeyError:
        raise VerifyError(f"blob {digest} is missing") from None
    if hashlib.sha256(data).hexdigest() != hex_digest:
        raise VerifyError(f"blob {digest} does not match its digest")
    return data


def check_user(user):
    if not user:
        raise VerifyError("no user is set, so the container runs as root")
    user_id, _, group_id = user.partition(":")
    if not user_id.isdigit() or (group_id and not group_id.isdigit()):
        raise VerifyError(f"user {user!r} is not numeric (runAsNonRoot cannot check a name)")
    if int(user_id) == 0 or (group_id and int(group_id) == 0):
        raise VerifyError(f"user {user!r} is root")


def verify_archive(args):
    entrypoint_file = args.entrypoint.lstrip("/")
    with tarfile.open(args.archive) as archive:
        index = json.loads(archive.extractfile("index.json").read())
        manifests = index.get("manifests", [])
        if len(manifests) != 1:
            raise VerifyError(f"index.json lists {len(manifests)} manifests, expected 1")
        reference = manifests[0].get("annotations", {}).get("org.opencontainers.image.ref.name")
        if reference != args.reference:
            raise VerifyError(f"index.json names the image {reference!r}, expected {args.reference!r}")
        if manifests[0].get("mediaType") != OCI_MANIFEST:
            raise VerifyError(f"manifest media type {manifests[0].get('mediaType')} is not OCI")
        manifest = json.loads(read_blob(archive, manifests[0]["digest"]))
        image = json.loads(read_blob(archive, manifest["config"]["digest"]))
        config = image.get("config", {})

        if (image.get("os"), image.get("architecture")) != ("linux", args.arch):
            raise VerifyError(f"platform {image.get('os')}/{image.get('architecture')} is not linux/{args.arch}")
        check_user(config.get("User", ""))
        if config.get("Entrypoint") != [args.entrypoint] or config.get("Cmd"):
            raise VerifyError(f"entrypoint {config.get('Entrypoint')} cmd {config.get('Cmd')}, expected [{args.entrypoint}] and no cmd")
        if sorted(config.get("ExposedPorts") or {}) != sorted(args.expose):
            raise VerifyError(f"exposed ports {sorted(config.get('ExposedPorts') or {})}, expected {sorted(args.expose)}")
        labels = config.get("Labels") or {}
        expected_labels = {
            "org.opencontainers.image.title": args.title,
            "org.opencontainers.image.version": args.version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        }
        for key, value in expected_labels.items():
            if labels.get(key) != value:
                raise VerifyError(f"label {key} is {labels.get(key)!r}, expected {value!r}")

        files = {}
        compressed_size = 0
        for layer in manifest["layers"]:
            compressed_size += layer["size"]
            with tarfile.open(fileobj=io.BytesIO(read_blob(archive, layer["digest"]))) as layer_tar:
                for member in layer_tar.getmembers():
                    name = posixpath.normpath("/" + member.name).lstrip("/") or "."
                    if name == "." or (member.isdir() and name in ALLOWED_DIRECTORIES):
                        continue
                    if name not in (entrypoint_file, CA_BUNDLE):
                        raise VerifyError(f"unexpected entry /{name} (the image holds only the binary and the CA bundle)")
                    if not member.isfile():
                        raise VerifyError(f"/{name} is not a regular file")
                    files[name] = (member, layer_tar.extractfile(member).read())

    for name in (entrypoint_file, CA_BUNDLE):
        if name not in files:
            raise VerifyError(f"/{name} is missing")
    binary_member, binary = files[entrypoint_file]
    if binary_member.uid != 0 or binary_member.mode & 0o022:
        raise VerifyError(f"{args.entrypoint} is writable by someone other than root (uid {binary_member.uid}, mode {binary_member.mode:o})")
    if binary_member.mode & 0o001 == 0:
        raise VerifyError(f"{args.entrypoint} is not executable by other users (mode {binary_member.mode:o})")
    try:
        check_static_elf(binary, args.arch)
    except VerifyError as error:
        raise VerifyError(f"{args.entrypoint}: {error}") from None
    if b"BEGIN CERTIFICATE" not in files[CA_BUNDLE][1]:
        raise VerifyError(f"/{CA_BUNDLE} holds no certificate")

    if args.rootfs:
        for name, (member, data) in files.items():
            path = os.path.join(args.rootfs, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(data)
            os.chmod(path, member.mode & 0o777)

    print(
        f"{args.reference}: linux/{args.arch}, user {config['User']}, "
        f"entrypoint {config['Entrypoint']}, {args.entrypoint} static "
        f"{len(binary) / 2**20:.1f} MiB, layers {compressed_size / 2**20:.1f} MiB compressed, "
        f"archive {os.path.getsize(args.archive) / 2**20:.1f} MiB"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    elf = commands.add_parser("elf")
    elf.add_argument("binary")
    elf.add_argument("arch", choices=sorted(ELF_MACHINE))
    archive = commands.add_parser("archive")
    archive.add_argument("archive")
    archive.add_argument("--reference", required=True)
    archive.add_argument("--title", required=True)
    archive.add_argument("--version", required=True)
    archive.add_argument("--arch", required=True, choices=sorted(ELF_MACHINE))
    archive.add_argument("--entrypoint", required=True)
    archive.add_argument("--expose", action="append", default=[])
    archive.add_argument("--rootfs")
    args = parser.parse_args()

    subject = args.binary if args.command == "elf" else args.archive
    try:
        if args.command == "elf":
            with open(args.binary, "rb") as file:
                check_static_elf(file.read(), args.arch)
        else:
            verify_archive(args)
    except (VerifyError, OSError, KeyError, ValueError, tarfile.TarError) as error:
        print(f"failed to verify {subject}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
