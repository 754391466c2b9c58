"""Micro-benchmark of one Nature-CNN DQN update under different settings (exploratory; see dqn_speed.py)."""
import sys, time, dataclasses
import numpy as np, torch, gymnasium as gym
from rlkit.agents import DQN, DQNConfig
from rlkit.buffers import ReplayBuffer

def bench(cfg_changes, n=40, channels_last=False, fused=False):
    torch.manual_seed(0)
    cfg = dataclasses.replace(DQNConfig(), **cfg_changes)
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = DQN(cfg, obs_space, gym.spaces.Discrete(4), total_steps=1000)
    if fused:
        agent.optimizer = torch.optim.Adam(agent.q_net.parameters(), lr=1e-4, fused=True)
    if channels_last:
        agent.q_net.to(memory_format=torch.channels_last); agent.target_net.to(memory_format=torch.channels_last)
    buf = agent.replay_buffer(1, 4, seed=0)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8)
    for t in range(300):
        nxt = rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8)
        buf.add(obs, np.array([1]), np.array([0.0]), np.array([False]), np.array([False]), nxt); obs = nxt
    batches = [buf.sample(32) for _ in range(n)]
    for b in batches[:5]: agent.update(b)
    t0 = time.perf_counter()
    for b in batches: agent.update(b)
    upd = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n): buf.sample(32)
    smp = n / (time.perf_counter() - t0)
    x = obs
    t0 = time.perf_counter()
    for _ in range(200): agent.act(x, explore=False)
    act = 200 / (time.perf_counter() - t0)
    return upd, smp, act

for name, kw in [("base", {}), ("fused", {"fused": True}), ("channels_last", {"channels_last": True}), ("both", {"fused": True, "channels_last": True})]:
    print(name, ["%.1f" % v for v in bench({}, **kw)], "updates/s, samples/s, acts/s", flush=True)
