#!/usr/bin/env python3
"""Regenerate ../src/descriptors.txt from upstream Kubernetes sources.

Usage: extract_descriptors.py API_GIT APIMACHINERY_GIT APIEXTENSIONS_GIT > src/descriptors.txt

Each argument is a git directory (bare or not); files are read from HEAD.
Wire facts (field numbers, scalar/message types, repeated, map) come from the
`generated.proto` files; JSON facts (name, pointer-ness, omitempty, inline
embedding) come from the Go struct tags of the same types, because the proto
field name is not always the JSON name (`uID` vs `uid`, `ref` vs `$ref`) and
embedded structs are flattened in JSON only.
"""
import re
import subprocess
import sys


def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True,
                          capture_output=True, text=True).stdout


def ls(repo):
    return git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()


def show(repo, path):
    return git(repo, "show", "HEAD:" + path)


FIELD_RE = re.compile(r"^\s*(optional|repeated|required)\s+(\S+)\s+(\w+)\s*=\s*(\d+)")
MAP_RE = re.compile(r"^\s*map<\s*(\S+)\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+)")
SCALARS = {"string", "int32", "int64", "bool", "bytes", "double", "float",
           "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
           "sfixed32", "sfixed64"}


def parse_proto(text):
    """Return (package, {message: [(num, protoName, type, repeated)]})."""
    pkg = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
    messages = {}
    current = None
    depth = 0
    for line in text.splitlines():
        code = line.split("//", 1)[0]
        m = re.match(r"^\s*message\s+(\w+)\s*\{", code)
        if m:
            if depth != 0:
                raise SystemExit("nested message in " + pkg)
            current = m.group(1)
            messages[current] = []
            depth = 1
            continue
        if current is None:
            continue
        m = MAP_RE.match(code)
        if m:
            k, v, name, num = m.groups()
            messages[current].append((int(num), name, "map[%s]%s" % (qualify(k, pkg), qualify(v, pkg)), False))
            continue
        m = FIELD_RE.match(code)
        if m:
            label, typ, name, num = m.groups()
            messages[current].append((int(num), name, qualify(typ, pkg), label == "repeated"))
            continue
        depth += code.count("{") - code.count("}")
        if depth == 0:
            current = None
    return pkg, messages


def qualify(typ, pkg):
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    return pkg + "." + typ


GO_NAMED = re.compile(r"^\s*([A-Z]\w*)\s+(\S+)\s+`([^`]*)`")
GO_EMBED = re.compile(r"^\s*(\*?[\w.]+)\s+`([^`]*)`")
TAG = re.compile(r'(\w+):"([^"]*)"')


def parse_go(texts):
    """Return ({struct: {num: (jsonName, mode)}}, {list wrapper type names})."""
    structs = {}
    wrappers = set()
    for text in texts:
        for m in re.finditer(r"^type (\w+) \[\]", text, re.M):
            wrappers.add(m.group(1))
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
            fields = {}
            for line in m.group(2).splitlines():
                code = line.split("//", 1)[0] if "`" not in line.split("//", 1)[0] and "//" in line else line
                g = GO_NAMED.match(code)
                embedded = False
                if g:
                    gotype, tags = g.group(2), g.group(3)
                else:
                    g = GO_EMBED.match(code)
                    if not g:
                        continue
                    gotype, tags = g.group(1), g.group(2)
                    embedded = True
                tags = dict(TAG.findall(tags))
                if len(tags.get("protobuf", "").split(",")) < 2:
                    continue
                num = int(tags["protobuf"].split(",")[1])
                jparts = tags.get("json", "").split(",")
                jname, opts = jparts[0], jparts[1:]
                if embedded and jname == "":
                    mode = "i"
                elif gotype.startswith("*"):
                    mode = "p"
                elif "omitempty" in opts:
                    mode = "o"
                else:
                    mode = "a"
                if jname in ("-", ""):
                    jname = "-"
                fields[num] = (jname, mode)
            structs[m.group(1)] = fields
    return structs, wrappers


def go_texts(repo, files, directory):
    out = []
    for f in files:
        if f.startswith(directory + "/") and f.count("/") == directory.count("/") + 1 \
                and f.endswith(".go") and not f.endswith("_test.go") \
                and not f.endswith("generated.pb.go"):
            out.append(show(repo, f))
    return out


def main():
    api, machinery, apiext = sys.argv[1:4]
    sources = []  # (repo, proto path, group or None)
    api_files = ls(api)
    for p in api_files:
        if p.endswith("/generated.proto"):
            d = p.rsplit("/", 1)[0]
            reg = show(api, d + "/register.go") if d + "/register.go" in api_files else ""
            g = re.search(r'GroupName = "([^"]*)"', reg)
            sources.append((api, api_files, p, g.group(1) if g else None))
    mfiles = ls(machinery)
    for p in ["pkg/apis/meta/v1/generated.proto", "pkg/runtime/generated.proto",
              "pkg/api/resource/generated.proto", "pkg/util/intstr/generated.proto",
              "pkg/runtime/schema/generated.proto"]:
        sources.append((machinery, mfiles, p, "meta.k8s.io" if "meta/v1" in p else None))
    efiles = ls(apiext)
    for p in efiles:
        if re.match(r"pkg/apis/apiextensions/v1(beta1)?/generated.proto$", p):
            sources.append((apiext, efiles, p, "apiextensions.k8s.io"))

    print("# Kubernetes protobuf descriptors for skiff-protobuf. Generated by")
    print("# tools/extract_descriptors.py; do not edit by hand. Sources (HEAD):")
    for repo, name in [(api, "kubernetes/api"), (machinery, "kubernetes/apimachinery"),
                       (apiext, "kubernetes/apiextensions-apiserver")]:
        print("#   %s %s" % (name, git(repo, "rev-parse", "HEAD").strip()))
    print("# G group version package        (apiVersion -> proto package)")
    print("# M message [w]                  (w: Go list type, JSON is the items array)")
    print("# number jsonName mode type      (mode p=pointer a=always o=omitempty i=inline;")
    print("#                                 type []T repeated, map[K]V map)")
    missing = []
    for repo, files, path, group in sources:
        pkg, messages = parse_proto(show(repo, path))
        directory = path.rsplit("/", 1)[0]
        structs, wrappers = parse_go(go_texts(repo, files, directory))
        version = directory.rsplit("/", 1)[1]
        if group is not None:
            print("G %s %s %s" % (group or "-", version, pkg))
        for name, fields in messages.items():
            go = structs.get(name)
            print("M %s.%s%s" % (pkg, name, " w" if name in wrappers else ""))
            for num, pname, typ, repeated in fields:
                jname, mode = (go or {}).get(num, (pname, "p"))
                if mode == "i" and (typ in SCALARS or repeated or typ.startswith("map[")):
                    # An embedded non-struct (meta/v1 Duration's time.Duration).
                    jname, mode = pname, "p"
                if go is None or num not in go:
                    missing.append("%s.%s %d %s" % (pkg, name, num, pname))
                print("%d %s %s %s%s" % (num, jname, mode, "[]" if repeated else "", typ))
    for m in missing:
        print("no Go field for", m, file=sys.stderr)


main()
