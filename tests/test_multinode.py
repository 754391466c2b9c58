"""A real two-host run: two Linux network namespaces joined by a veth pair stand for two machines, each with its own
host name (a UTS namespace) and ``/etc/hosts`` (``ip netns exec`` mounts ``/etc/netns/NAME/hosts`` over it), and the
README's multi-node torchrun command (c10d rendezvous over that link, the endpoint named by the first host's name)
runs in each, for PPO and for a classifier.

Needs root and iproute2 (``.ci/run`` installs it where it can); elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_multinode_command() -> list[str]:
    """The README's two-machine torchrun command, as a list of arguments."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"# two machines.*\n(torchrun --nnodes 2 .*\\\n\s+.*)\n", text)
    assert match, "the README's multi-node command is gone: keep it, this test runs it"
    return shlex.split(match.group(1).replace("\\\n", " "))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    """(namespace, address, interface) of two hosts on one veth link; the namespace's name is also the host's name.
    Removed afterwards."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: the two-host test needs it to give each host its name")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed: the two-host test needs it to make network namespaces")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = f"rlk{os.getpid() % 100000}"
    subnet = random.Random(os.getpid()).randint(1, 250)
    hosts = [(f"{tag}a", f"10.{subnet}.77.1", f"{tag}va"), (f"{tag}b", f"10.{subnet}.77.2", f"{tag}vb")]
    try:
        for namespace, _, _ in hosts:
            _ip("netns", "add", namespace)
        _ip("link", "add", hosts[0][2], "type", "veth", "peer", "name", hosts[1][2])
        for namespace, address, interface in hosts:
            _ip("link", "set", interface, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", interface)
            _ip("-n", namespace, "link", "set", interface, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, address, _ in hosts)
        for namespace, _, _ in hosts:
            (Path("/etc/netns") / namespace).mkdir(parents=True, exist_ok=True)
            (Path("/etc/netns") / namespace / "hosts").write_text(hosts_file)
    except (subprocess.CalledProcessError, OSError) as error:
        remove(hosts)
        pytest.skip(f"cannot make network namespaces here ({getattr(error, 'stderr', '').strip() or error}): the two-host test "
                    "needs a kernel and permissions that allow them")
    yield hosts
    remove(hosts)


def remove(hosts) -> None:
    for namespace, _, _ in hosts:
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)


def run_on_two_hosts(hosts, job: list[str], tmp_path: Path, name: str) -> list[subprocess.CompletedProcess]:
    """The README command with ``job`` as train.py's arguments, one process per host, started in both namespaces."""
    command = readme_multinode_command()
    at = command.index("train.py")
    command = command[:at] + [str(ROOT / "train.py")] + job
    port = 29000 + os.getpid() % 900
    command = [part.replace("HOST0:29500", f"{hosts[0][0]}:{port}") for part in command]
    command[command.index("--nproc-per-node") + 1] = "1"  # two cores here: one process per "machine"
    command[command.index("--rdzv-id") + 1] = f"{name}{os.getpid()}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    processes = []
    for namespace, _, interface in hosts:
        env = {**os.environ, "GLOO_SOCKET_IFNAME": interface, "TP_SOCKET_IFNAME": interface,
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', namespace]
        processes.append(subprocess.Popen(["ip", "netns", "exec", namespace, *named, *torchrun], cwd=tmp_path, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    done = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(process.args, process.returncode, out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return done


def test_the_readme_multinode_command_trains_ppo_and_a_classifier_across_two_hosts(two_hosts, tmp_path):
    from rlkit.checkpoint import load_checkpoint
    from rlkit.data.fixtures import make_tiny_dataset

    ppo_run, classifier_run = tmp_path / "ppo", tmp_path / "classifier"
    command = readme_multinode_command()
    ppo_job = command[command.index("train.py") + 1:]
    assert ppo_job[:4] == ["--agent", "ppo", "--env", "Breakout"]
    results = run_on_two_hosts(two_hosts, [*ppo_job, "--total-steps", "512", "--num-envs", "2", "--num-steps", "128",
                                           "--eval-episodes", "0", "--run-dir", str(ppo_run), "--no-progress"],
                               tmp_path, "ppo")
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:]
    assert load_checkpoint(ppo_run)["loop"]["steps"] >= 512

    data = make_tiny_dataset("fashion-mnist", tmp_path / "data", train=64, test=16, seed=0)
    results = run_on_two_hosts(two_hosts, ["--task", "fashion-mnist", "--net", "resnet", "--width", "0.125",
                                           "--data-dir", str(data), "--max-steps", "3", "--batch-size", "8",
                                           "--run-dir", str(classifier_run), "--no-progress"], tmp_path, "cls")
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:]
    assert load_checkpoint(classifier_run)["learner"]["updates"] == 3
