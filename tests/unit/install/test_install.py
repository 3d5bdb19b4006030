#!/usr/bin/env python3
"""Host unit tests of the top Makefile's `make install` and of systemd/.

    python3 test_install.py [NAME-SUBSTRING]     prints "N passed, N failed, N skipped"

Each install runs once per process (cached): the tests read its result.
"""

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import unitrun  # noqa: E402  (tests/unit/unitrun.py)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SCRATCH = tempfile.mkdtemp(prefix="dmu-install.")


def version():
    with open(os.path.join(ROOT, "daemon", "version.h")) as f:
        return re.search(r'DMUSERD_VERSION "([^"]+)"', f.read()).group(1)


def make_install(name, *args):
    """make install ARGS into SCRATCH/name; returns that directory."""
    dest = os.path.join(SCRATCH, name)
    os.makedirs(dest)
    args = [a.replace("@DEST@", dest) for a in args]
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise AssertionError(f"make install {' '.join(args)} failed:\n{r.stdout}")
    return dest


@functools.lru_cache(maxsize=None)
def destdir_install():
    """The defaults (PREFIX=/usr/local), under DESTDIR."""
    return make_install("destdir", "DESTDIR=@DEST@")


@functools.lru_cache(maxsize=None)
def prefix_install():
    """No DESTDIR: everything under a PREFIX of the test's own, so the units'
    paths exist and systemd-analyze verify can check them."""
    return make_install("prefix", "PREFIX=@DEST@/opt", "unitdir=@DEST@/units",
                        "modulesloaddir=@DEST@/modules-load.d", "sysconfdir=@DEST@/etc",
                        "dkmssrcdir=@DEST@/src/dm-user", "libdir=@DEST@/opt/lib64")


def installed(top):
    """Every file and symlink under top, as /paths relative to it."""
    out = []
    for d, dirs, files in os.walk(top):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out.append("/" + os.path.relpath(os.path.join(d, n), top))
    return sorted(out)


def unitdir():
    r = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return r.stdout.strip() or "/lib/systemd/system"


def expected_files(prefix="/usr/local", libdir=None, units=None, modload=None, src=None):
    libdir = libdir or prefix + "/lib"
    src = src or f"/usr/src/dm-user-{version()}"
    units = units or unitdir()
    modload = modload or "/usr/lib/modules-load.d"
    man = prefix + "/share/man"
    files = [
        f"{units}/dmuserd@.service", f"{units}/dmuser-exporter.service",
        f"{modload}/dm-user.conf",
        f"{prefix}/include/dmuser.h",
        f"{libdir}/libdmuser.a", f"{libdir}/libdmuser.so", f"{libdir}/libdmuser.so.1",
        f"{libdir}/libdmuser.so.1.5.0", f"{libdir}/pkgconfig/libdmuser.pc",
        f"{prefix}/sbin/dmuserd", f"{prefix}/sbin/dmuser-lat", f"{prefix}/sbin/dmuser-top",
        f"{prefix}/sbin/dmuser-exporter", f"{prefix}/sbin/dmuser-inflight",
        f"{prefix}/share/dm-user/dashboards/grafana/dm-user.json",
        f"{prefix}/share/dm-user/dashboards/prometheus/dm-user.rules.yml",
        f"{prefix}/share/dm-user/dashboards/prometheus/prometheus.yml",
        f"{prefix}/share/dm-user/dmuserd.conf.example",
        f"{man}/man3/libdmuser.3", f"{man}/man8/dmuserd.8", f"{man}/man8/dmuser-lat.8",
        f"{src}/dkms.conf", f"{src}/Makefile", f"{src}/Kbuild", f"{src}/dm-user.c",
        f"{src}/dm-user-trace.h", f"{src}/include/uapi/linux/dm-user.h",
        f"{src}/scripts/vmlinux-btf.sh",
    ]
    # every one-liner of the tree
    files += [f"{prefix}/share/dm-user/oneliners/{n}"
              for n in os.listdir(os.path.join(ROOT, "bpf", "oneliners")) if n.endswith(".bt")]
    # the man pages that exist in the tree (being written elsewhere)
    for page, sect in (("bpf/dmuser-top.8", 8), ("bpf/dmuser-exporter.8", 8),
                       ("bpf/dmuser-inflight.8", 8), ("module/dm-user.4", 4)):
        if os.path.exists(os.path.join(ROOT, page)):
            files.append(f"{man}/man{sect}/{os.path.basename(page)}")
    return sorted(files)


def diff(got, want):
    return (f"missing: {sorted(set(want) - set(got))}\n"
            f"stray: {sorted(set(got) - set(want))}")


class Install(unittest.TestCase):
    def test_destdir_exact_file_list(self):
        got = installed(destdir_install())
        want = expected_files()
        self.assertEqual(got, want, diff(got, want))

    def test_prefix_exact_file_list(self):
        top = prefix_install()
        got = installed(top)
        want = expected_files(prefix=top + "/opt", libdir=top + "/opt/lib64",
                              units=top + "/units", modload=top + "/modules-load.d",
                              src=top + "/src/dm-user")
        # installed() lists paths relative to top; these are absolute
        got = [top + p for p in got]
        self.assertEqual(got, want, diff(got, want))

    def test_modes_and_links(self):
        top = destdir_install()
        for prog in ("dmuserd", "dmuser-lat", "dmuser-top", "dmuser-exporter", "dmuser-inflight"):
            self.assertEqual(os.stat(f"{top}/usr/local/sbin/{prog}").st_mode & 0o777, 0o755, prog)
        src = f"{top}/usr/src/dm-user-{version()}"
        self.assertEqual(os.stat(f"{src}/scripts/vmlinux-btf.sh").st_mode & 0o777, 0o755)
        oneliners = f"{top}/usr/local/share/dm-user/oneliners"
        for n in os.listdir(oneliners):	# scripts: #!/usr/bin/env bpftrace
            self.assertEqual(os.stat(f"{oneliners}/{n}").st_mode & 0o777, 0o755, n)
        for f in ("dkms.conf", "dm-user.c", "Makefile"):
            self.assertEqual(os.stat(f"{src}/{f}").st_mode & 0o777, 0o644, f)
        for f in ("dmuserd@.service", "dmuser-exporter.service"):
            self.assertEqual(os.stat(f"{top}{unitdir()}/{f}").st_mode & 0o777, 0o644, f)
        lib = f"{top}/usr/local/lib"
        self.assertEqual(os.readlink(f"{lib}/libdmuser.so"), "libdmuser.so.1")
        self.assertEqual(os.readlink(f"{lib}/libdmuser.so.1"), "libdmuser.so.1.5.0")

    def test_pc_file_points_at_the_prefix(self):
        for top, prefix, libdir in ((destdir_install(), "/usr/local", "/usr/local/lib"),
                                    (prefix_install(), prefix_install() + "/opt",
                                     prefix_install() + "/opt/lib64")):
            pcdir = top + libdir if top == destdir_install() else libdir
            env = dict(os.environ, PKG_CONFIG_PATH=pcdir + "/pkgconfig", PKG_CONFIG_LIBDIR="")
            for var, want in (("prefix", prefix), ("libdir", libdir),
                              ("includedir", prefix + "/include")):
                r = subprocess.run(["pkg-config", "--variable=" + var, "libdmuser"], env=env,
                                   stdout=subprocess.PIPE, text=True, check=True)
                self.assertEqual(r.stdout.strip(), want, f"{var} in {pcdir}")

    def test_units_name_the_installed_programs(self):
        top = prefix_install()
        with open(f"{top}/units/dmuserd@.service") as f:
            unit = f.read()
        self.assertIsNone(re.search(r"@[a-z]+@", unit), "a @substitution@ left in dmuserd@.service")
        self.assertIn(f"ExecStart={top}/opt/sbin/dmuserd --name %i --adopt --config "
                      f"{top}/etc/dm-user/%i.conf\n", unit)
        self.assertIn(f"ConditionPathExists={top}/etc/dm-user/%i.conf\n", unit)
        self.assertIn("Type=notify\n", unit)
        with open(f"{top}/units/dmuser-exporter.service") as f:
            self.assertIn(f"ExecStart={top}/opt/sbin/dmuser-exporter ", f.read())

    def test_dkms_conf_names_this_version(self):
        src = f"{destdir_install()}/usr/src/dm-user-{version()}"
        with open(f"{src}/dkms.conf") as f:
            conf = f.read()
        self.assertIn(f'PACKAGE_VERSION="{version()}"\n', conf)
        self.assertIn('BUILT_MODULE_NAME[0]="dm-user"\n', conf)
        # the MAKE command's target exists in the Makefile shipped with it
        target = re.search(r'^MAKE\[0\]=".* (\S+)"$', conf, re.M).group(1)
        r = subprocess.run(["make", "-n", "-C", src, target, "KDIR=/nonexistent", "KVER=x"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertNotIn("No rule to make target", r.stdout)


class Units(unittest.TestCase):
    def test_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed (Debian package systemd)")
        top = prefix_install()
        # the template as an instance (verify checks a unit it could start)
        os.makedirs(f"{top}/verify", exist_ok=True)
        shutil.copy(f"{top}/units/dmuserd@.service", f"{top}/verify/dmuserd@disk0.service")
        # both at once: an ordering cycle between them shows only so
        paths = [f"{top}/verify/dmuserd@disk0.service", f"{top}/units/dmuser-exporter.service"]
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.strip(), "", r.stdout)

    def test_modules_load_entry(self):
        with open(f"{prefix_install()}/modules-load.d/dm-user.conf") as f:
            lines = [l for l in f.read().splitlines() if l and not l.startswith("#")]
        self.assertEqual(lines, ["dm-user"])


def main(argv):
    try:
        return unitrun.run(sys.modules[__name__], argv[1] if len(argv) > 1 else None)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
