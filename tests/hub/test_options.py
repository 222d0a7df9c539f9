"""The option parser: typed values, ranges, whitelists; the same rules for form and API."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcsc3_spawner.options import FIELDS, OptionError, form_to_options, parse_spawn_options
from rcsc3_spawner.profiles import DEFAULT_PROFILES, ProfileError, format_walltime, parse_profiles, parse_walltime_minutes
from rcsc3_spawner.slurm.cluster_info import parse_cluster

PROFILES = parse_profiles(DEFAULT_PROFILES)

PARTITIONS = (
    "PartitionName=interactive Default=YES MaxTime=06:00:00 Nodes=vm State=UP MaxMemPerNode=UNLIMITED\n"
    "PartitionName=cpu Default=NO MaxTime=12:00:00 Nodes=vm State=UP MaxMemPerNode=UNLIMITED\n"
)
NODES = (
    "NodeName=vm Arch=x86_64 CPUTot=4 Gres=gpu:2 NodeAddr=127.0.0.1 OS=Linux 6.1 #1 SMP "
    "RealMemory=8192 Partitions=interactive,cpu\n"
)
CLUSTER = parse_cluster(PARTITIONS, NODES)


def parse(raw):
    return parse_spawn_options(raw, PROFILES, CLUSTER)


def test_defaults_spawn_the_gpu_profile():
    req = parse({})
    assert req.profile.slug == "gpu-desktop"
    assert "GPU" in req.profile.display_name
    assert (req.gpus, req.cpus, req.memory_gb, req.walltime_minutes) == (1, 2, 4, 120)


def test_form_and_api_give_the_same_request():
    form = {"profile": ["cpu"], "gpus": ["0"], "cpus": ["3"], "memory": ["2"], "walltime": ["1:30"], "_xsrf": ["x"]}
    api = {"profile": "cpu", "gpus": 0, "cpus": 3, "memory": 2, "walltime": "1:30"}
    assert parse(form_to_options(form)) == parse(api)
    assert parse(api).as_user_options() == {"profile": "cpu", "gpus": 0, "cpus": 3, "memory": 2, "walltime": "1:30"}


@pytest.mark.parametrize(
    "raw, field, words",
    [
        ({"partition": "interactive\nid"}, "partition", ["unknown option", "allowed options: profile, gpus"]),
        ({"options": "--gres=gpu:2"}, "options", ["unknown option"]),
        ({"runtime": "6:00:00"}, "runtime", ["unknown option"]),
        ({"prologue": "id"}, "prologue", ["unknown option"]),
        ({"gpus": "1\n#SBATCH --gres=gpu:2"}, "gpus", ["control characters"]),
        ({"gpus": "1; id"}, "gpus", ["whole number from 1 to 2"]),
        ({"cpus": "$(id)"}, "cpus", ["whole number from 1 to 4"]),
        ({"cpus": "`id`"}, "cpus", ["whole number"]),
        ({"gpus": 3}, "gpus", ["out of range", "1 to 2"]),
        ({"gpus": 0}, "gpus", ["out of range", "1 to 2"]),
        ({"cpus": 0}, "cpus", ["out of range"]),
        ({"cpus": True}, "cpus", ["whole number"]),
        ({"cpus": 2.5}, "cpus", ["whole number"]),
        ({"memory": "999"}, "memory", ["out of range", "GiB"]),
        ({"memory": "4T"}, "memory", ["whole number"]),
        ({"walltime": ""}, "walltime", ["required", "0:15 to 6:00"]),
        ({"walltime": "  "}, "walltime", ["required"]),
        ({"walltime": "7:00"}, "walltime", ["out of range", "6:00"]),
        ({"walltime": "0:05"}, "walltime", ["out of range"]),
        ({"walltime": "UNLIMITED"}, "walltime", ["H:MM"]),
        ({"walltime": "1:00\n#SBATCH --time=0"}, "walltime", ["control characters"]),
        ({"profile": "nope"}, "profile", ["gpu-desktop, cpu"]),
        ({"profile": ["gpu-desktop", "cpu"]}, "profile", ["one value"]),
        ({"profile": "cpu", "gpus": 1}, "gpus", ["out of range", "0 to 0"]),
    ],
)
def test_bad_values_are_rejected_naming_the_field(raw, field, words):
    with pytest.raises(OptionError) as exc:
        parse(raw)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}:")
    for w in words:
        assert w in str(exc.value)


def test_values_are_never_clamped():
    # 16 GiB is the profile's max but the node has 8: the bound shrinks, the value is refused.
    with pytest.raises(OptionError, match="out of range; allowed: 1 to 8 GiB"):
        parse({"memory": 16})


def test_limits_come_from_slurm():
    tight = parse_cluster(PARTITIONS.replace("06:00:00", "01:00:00"), NODES.replace("gpu:2", "gpu:1"))
    with pytest.raises(OptionError, match="1 to 1"):
        parse_spawn_options({"gpus": 2}, PROFILES, tight)
    with pytest.raises(OptionError, match="0:15 to 1:00"):
        parse_spawn_options({"walltime": "2:00"}, PROFILES, tight)
    # the default shrinks with the limit, so the form's defaults still spawn
    assert parse_spawn_options({}, PROFILES, tight).walltime_minutes == 60


def test_walltime_formats():
    assert parse_walltime_minutes("90") == 90
    assert parse_walltime_minutes("1:30") == 90
    assert parse_walltime_minutes("1:30:01") == 91
    assert parse_walltime_minutes("1-02") == 26 * 60
    assert format_walltime(90) == "1:30:00"
    assert format_walltime(1500) == "1-01:00:00"
    for bad in ("", "1:60", "abc", "1:2:3:4", "-1"):
        with pytest.raises(ValueError):
            parse_walltime_minutes(bad)


def test_bad_admin_profiles_are_config_errors():
    with pytest.raises(ProfileError, match="partition"):
        parse_profiles([{"slug": "x", "partition": "gpu;id"}])
    with pytest.raises(ProfileError, match="extra_sbatch"):
        parse_profiles([{"slug": "x", "partition": "p", "extra_sbatch": ["--x=1\n#SBATCH --y"]}])
    with pytest.raises(ProfileError, match="unknown keys"):
        parse_profiles([{"slug": "x", "partition": "p", "prologue": "id"}])
    # a trailing newline is no part of a name (`re.match` with `$` let it through)
    for bad in ({"slug": "x\n", "partition": "p"}, {"slug": "x", "partition": "p\n"},
                {"slug": "x", "partition": "p", "account": "a\n"}, {"slug": "x", "partition": "p", "extra_sbatch": ["--x=1\n"]}):
        with pytest.raises(ProfileError):
            parse_profiles([bad])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(
    st.sampled_from(list(FIELDS) + ["partition", "options", "x"]),
    st.one_of(st.text(max_size=20), st.integers(-5, 50), st.booleans(), st.none(), st.lists(st.text(max_size=5), max_size=3)),
    max_size=6,
))
def test_fuzz_parser_accepts_only_clean_values(raw):
    """Whatever comes in, either a clear OptionError or a request made of in-range integers."""
    try:
        req = parse(raw)
    except OptionError as e:
        assert str(e).split(":")[0] in set(FIELDS) | set(map(str, raw)) | {"user_options"}
        return
    assert set(raw) <= set(FIELDS)
    assert 0 <= req.gpus <= 2 and 1 <= req.cpus <= 4 and 1 <= req.memory_gb <= 8
    assert 15 <= req.walltime_minutes <= 12 * 60
