"""vcapp.toml: what a valid file becomes, and the exact message each mistake gets."""

import pytest

from vcapp.appconfig import AppConfigError, defaults, parse

pytestmark = pytest.mark.unit

FULL = """\
app = "blog"
port = 5000
count = 2
kill_timeout = 30

[resources]
cpus = 0.5
memory = "256M"

[health]
path = "/healthz"
grace = 20

[env]
MODE = "prod"
DEBUG = false

[[mounts]]
source = "data"
destination = "/data"
size = "1G"

[access]
policy = "token"
"""


def test_full_file_becomes_the_spec_fields():
    spec = parse(FULL, "blog").spec()
    assert spec == {"port": 5000, "count": 2, "kill_timeout": 30, "cpus": 0.5, "memory_mb": 256,
                    "health": {"type": "http", "path": "/healthz", "start_grace_s": 20},
                    "env": {"MODE": "prod", "DEBUG": "false"},
                    "mounts": [{"source": "data", "destination": "/data", "size_mb": 1024}], "policy": "token"}


def test_no_file_or_empty_file_sets_only_port_and_a_tcp_check():
    assert defaults().spec() == parse("", "blog").spec() == {"port": 8080, "health": {"type": "tcp"}}


@pytest.mark.parametrize("text, message", [
    ("port = 0\n", "vcapp.toml line 1: port: 0 is out of range: use 1 to 65535"),
    ("port = \"web\"\n", "vcapp.toml line 1: port: must be a whole number from 1 to 65535, not 'web'"),
    ("\n\ncount = 1000\n", "vcapp.toml line 3: count: 1000 is out of range: use 0 to 100"),
    ("kill_timeout = 0\n", "vcapp.toml line 1: kill_timeout: 0 is out of range: use 1 to 300"),
    ("kill_timeout = \"10s\"\n", "kill_timeout: must be a whole number from 1 to 300, not '10s'"),
    ("prot = 80\n", "vcapp.toml line 1: prot: unknown field; allowed: app, port, count"),
    ("[resources]\nmemory = \"lots\"\n",
     "vcapp.toml line 2: resources.memory: use a size like \"256M\" or \"1G\" (16M to 64G), not 'lots'"),
    ("[resources]\ncpus = 100\n", "vcapp.toml line 2: resources.cpus: 100 is out of range: use 0.05 to 64"),
    ("[resources]\ncpu = 1\n", "vcapp.toml line 2: resources.cpu: unknown field; allowed in [resources]: cpus, memory"),
    ("[health]\npath = \"healthz\"\n", "vcapp.toml line 2: health.path: must be a URL path starting with '/'"),
    ("[health]\ntype = \"http\"\n", "vcapp.toml line 2: health.type: an http check needs a `path`"),
    ("[health]\ntype = \"grpc\"\n", "health.type: 'grpc' is not a check type; allowed: http, tcp, none"),
    ("[env]\nPORT = \"1\"\n", "vcapp.toml line 2: env.PORT: is set by vcapp from `port`"),
    ("[[mounts]]\nsource = \"data\"\ndestination = \"data\"\n",
     "vcapp.toml line 3: mounts[0].destination: must be an absolute path"),
    ("[[mounts]]\nsource = \"a\"\ndestination = \"/a\"\n[[mounts]]\nsource = \"Bad\"\ndestination = \"/b\"\n",
     "vcapp.toml line 5: mounts[1].source: must name a volume"),
    ("[access]\npolicy = \"private\"\n", "vcapp.toml line 2: access.policy: 'private' is not a policy; allowed: public, token"),
    ("app = \"other\"\n", "vcapp.toml line 1: app: says 'other' but this is the repository of 'blog'"),
    ("port = 80\nport = 81\n", "vcapp.toml is not valid TOML: Cannot overwrite a value (at line 2, column 10)"),
    ("[health\n", "vcapp.toml is not valid TOML"),
    ("[env]\n\"MODE\\n\" = \"x\"\n", "env.MODE\n: is not a valid variable name"),
    ("[env]\n\"2FA\" = \"x\"\n", "env.2FA: is not a valid variable name"),
    ("[env]\nBIG = \"%s\"\n" % ("x" * 33 * 1024), "vcapp.toml line 1: env: the value of BIG is 33792 bytes; "
                                                  "each value may be at most 32 KiB"),
    ("[env]\n" + "".join(f"V{i} = \"{'x' * 20 * 1024}\"\n" for i in range(4)), "env: the env is 81928 bytes in all; "
                                                                              "at most 64 KiB"),
    ("[env]\nNUL = \"a\\u0000b\"\n", "the value of NUL holds a NUL character"),
    ("[[mounts]]\nsource = \"data\\n\"\ndestination = \"/data\"\n", "mounts[0].source: must name a volume"),
    ("[resources]\nmemory = \"1%sG\"\n" % ("0" * 400), "resources.memory: '1000"),
])
def test_each_mistake_names_line_and_field_and_what_is_allowed(text, message):
    with pytest.raises(AppConfigError) as e:
        parse(text, "blog")
    assert message in str(e.value)
