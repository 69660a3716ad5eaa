"""The Frozen Lake world of ift.txt Sec. 5.3: maps, value iteration, the two paths, rollouts.

gymnasium's FrozenLake (non-slippery) is the ground truth: its transition table
``env.unwrapped.P`` is read once and turned into tensors (``Lake.next_state``,
...), because every rollout the toy needs is a batch of walks under a policy
*table*; stepping gymnasium one episode at a time would cost seconds per run.
tests/test_toy.py checks that the tensor walk and ``env.step`` agree.

ift.txt says the environment was designed "with one optimal and one sub-optimal
trajectory"; its map is not published, so the built-in maps below are ours:
a ring of ice around holes, the gift on the ring, so that exactly two hole-free
simple paths lead from S to G: a short one (optimal) and a long one
(sub-optimal). Dead-end spurs add states where the right move is to turn back.
``two_paths`` and ``small`` have a straight optimal path; ``bend`` and ``stairs``
have optimal paths with turns (the robustness study, docs/frozen_lake.md, uses all four).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

ACTIONS = ("left", "down", "right", "up")   # gymnasium's action order
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (d_row, d_col) of each action

MAPS = {
    # default: short path R R R R (4 steps); long path D D D R R R R U U U (10 steps);
    # spurs (1,2) and (4,2) are dead ends
    "two_paths": ("SFFFG",
                  "FHFHF",
                  "FHHHF",
                  "FFFFF",
                  "HHFHH"),
    # the smallest ring: R R R R (4) against D D R R R R U U (8)
    "small": ("SFFFG",
              "FHHHF",
              "FFFFF"),
    # an optimal path with one turn: D D D R R (5) against R R R R D D D L L (9)
    "bend": ("SFFFF",
             "FHHHF",
             "FHHHF",
             "FFGFF"),
    # an optimal staircase with four turns: R R D R D R (6) against D D D D R R R R U U (10)
    "stairs": ("SFFHH",
               "FHFFH",
               "FHHFG",
               "FHHHF",
               "FFFFF"),
}
DEFAULT_MAP = "two_paths"


def load_map(spec: str) -> tuple[str, ...]:
    """A built-in map by name, or a text file with one row of S/F/H/G per line."""
    if spec in MAPS:
        return MAPS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--map {spec!r} is neither a built-in map ({', '.join(MAPS)}) nor a file")
    rows = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return check_map(rows, source=str(path))


def check_map(rows, source: str = "map") -> tuple[str, ...]:
    rows = tuple(rows)
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"{source}: rows must be non-empty and of equal length, got {list(rows)}")
    bad = sorted({c for r in rows for c in r} - set("SFHG"))
    if bad:
        raise ValueError(f"{source}: unknown cell letters {bad}; use S, F, H, G")
    for letter in "SG":
        count = sum(r.count(letter) for r in rows)
        if count != 1:
            raise ValueError(f"{source}: needs exactly one '{letter}', found {count}")
    return rows


@dataclass
class Lake:
    """One map as tensors. States are cell indices row * ncol + col (gymnasium's)."""

    desc: tuple[str, ...]
    next_state: Tensor     # [S, A] long: where action a leads from s
    reward: Tensor         # [S, A] float: 1 on entering G
    terminal: Tensor       # [S] bool: holes and the gift
    start: int
    goal: int

    @property
    def nrow(self) -> int:
        return len(self.desc)

    @property
    def ncol(self) -> int:
        return len(self.desc[0])

    @property
    def n_states(self) -> int:
        return self.nrow * self.ncol

    @property
    def live(self) -> Tensor:
        """Indices of the non-terminal states: the rows every policy metric is taken over."""
        return (~self.terminal).nonzero(as_tuple=True)[0]

    def cell(self, s: int) -> tuple[int, int]:
        return divmod(int(s), self.ncol)

    def letter(self, s: int) -> str:
        r, c = self.cell(s)
        return self.desc[r][c]


def make_env(desc):
    return gym.make("FrozenLake-v1", desc=list(desc), is_slippery=False)


def build_lake(desc) -> Lake:
    """Read gymnasium's transition table P into tensors (deterministic moves only)."""
    desc = check_map(desc)
    env = make_env(desc)
    P = env.unwrapped.P
    nS, nA = env.observation_space.n, env.action_space.n
    nxt = torch.zeros(nS, nA, dtype=torch.long)
    rew = torch.zeros(nS, nA)
    for s in range(nS):
        for a in range(nA):
            outcomes = P[s][a]
            if len(outcomes) != 1 or outcomes[0][0] != 1.0:
                raise ValueError(f"state {s}, action {a}: expected one deterministic outcome, got {outcomes}")
            _, s2, r, _ = outcomes[0]
            nxt[s, a], rew[s, a] = s2, float(r)
    flat = "".join(desc)
    terminal = torch.tensor([ch in "HG" for ch in flat])
    env.close()
    return Lake(desc, nxt, rew, terminal, flat.index("S"), flat.index("G"))


# ------------------------------------------------------------------- value iteration
def value_iteration(lake: Lake, gamma: float, tol: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Q* and V* of the deterministic MDP (float64). Terminal states have V = 0.

    With gamma < 1 a longer route is worth gamma^(extra steps) less, so the short
    path is strictly optimal (the discount is the only thing that ranks the paths:
    both end with the same reward 1).
    """
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma={gamma} must lie in (0, 1) so that the shorter path is strictly better")
    nxt, rew = lake.next_state, lake.reward.double()
    alive = (~lake.terminal).double()
    V = torch.zeros(lake.n_states, dtype=torch.float64)
    for _ in range(10_000):
        Q = (rew + gamma * V[nxt]) * alive.unsqueeze(-1)
        V_new = Q.max(-1).values
        if (V_new - V).abs().max() < tol:
            break
        V = V_new
    if V[lake.start] <= 0:
        raise ValueError(f"map {list(lake.desc)}: the gift cannot be reached from the start")
    return Q, V_new


def soft_optimal_table(Q: Tensor, temperature: float) -> Tensor:
    """softmax(Q / temperature) per state: the 'optimal state-action probabilities'.

    The greedy optimum is a one-hot table whose ties (cells equally far both ways
    round the ring) are arbitrary and whose log-probs are -inf; a Boltzmann table
    is defined everywhere, splits ties evenly, and a network can match it.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    return torch.softmax(Q / temperature, dim=-1).float()


# ------------------------------------------------------------------------ the paths
def greedy_path(lake: Lake, table: Tensor, max_steps: int) -> tuple[list[int], list[int]]:
    """States and actions of the argmax walk from the start (ties: lowest action index)."""
    s, states, actions = lake.start, [], []
    for _ in range(max_steps):
        if lake.terminal[s]:
            break
        a = int(table[s].argmax())
        states.append(s)
        actions.append(a)
        s = int(lake.next_state[s, a])
    return states, actions


def shortest_path_avoiding(lake: Lake, blocked: set[int]) -> list[int] | None:
    """Actions of a shortest hole-free walk start -> goal that never enters ``blocked`` (BFS)."""
    parent = {lake.start: None}
    queue = deque([lake.start])
    while queue:
        s = queue.popleft()
        if s == lake.goal:
            actions = []
            while parent[s] is not None:
                s, a = parent[s]
                actions.append(a)
            return actions[::-1]
        if lake.terminal[s]:
            continue
        for a in range(len(ACTIONS)):
            s2 = int(lake.next_state[s, a])
            if s2 not in parent and s2 not in blocked and lake.letter(s2) != "H":
                parent[s2] = (s, a)
                queue.append(s2)
    return None


def walk(lake: Lake, actions: list[int]) -> list[int]:
    """States visited before each action of an action sequence from the start."""
    s, states = lake.start, []
    for a in actions:
        states.append(s)
        s = int(lake.next_state[s, a])
    return states


def two_paths(lake: Lake, q_star: Tensor) -> tuple[list[int], list[int]]:
    """(optimal actions, sub-optimal actions) from the start.

    Optimal: the greedy walk of Q*. Sub-optimal: the shortest hole-free walk that
    avoids every cell of the optimal path except start and goal, i.e. the other
    way round the ring.
    """
    opt_states, opt_actions = greedy_path(lake, q_star, 4 * lake.n_states)
    end = int(lake.next_state[opt_states[-1], opt_actions[-1]])
    if end != lake.goal:
        raise ValueError(f"map {list(lake.desc)}: the greedy optimal walk does not reach the gift")
    sub = shortest_path_avoiding(lake, set(opt_states[1:]))
    if sub is None:
        raise ValueError(f"map {list(lake.desc)} has no second hole-free path to the gift that avoids "
                         f"the optimal path; the toy needs one optimal and one sub-optimal path")
    return opt_actions, sub


def blocked_desc(lake: Lake, path_actions: list[int]) -> tuple[str, ...]:
    """The map with the interior cells of a path turned into holes."""
    rows = [list(r) for r in lake.desc]
    for s in walk(lake, path_actions)[1:]:
        r, c = lake.cell(s)
        rows[r][c] = "H"
    return tuple("".join(r) for r in rows)


# ------------------------------------------------------------------------- rollouts
@dataclass
class Trajectories:
    """R walks padded to T steps: the state before each step, the action taken, mask 1 on real steps."""

    states: Tensor    # [R, T] long
    actions: Tensor   # [R, T] long
    mask: Tensor      # [R, T] float
    reached: Tensor   # [R] bool: the walk entered the gift

    def __len__(self) -> int:
        return self.states.shape[0]

    def select(self, idx) -> "Trajectories":
        return Trajectories(self.states[idx], self.actions[idx], self.mask[idx], self.reached[idx])

    def trimmed(self) -> "Trajectories":
        """Drop trailing all-padding columns (keeps at least one step)."""
        T = max(int(self.mask.sum(-1).max()), 1)
        return Trajectories(self.states[:, :T], self.actions[:, :T], self.mask[:, :T], self.reached)

    @staticmethod
    def from_actions(lake: Lake, actions: list[int]) -> "Trajectories":
        states = walk(lake, actions)
        end = int(lake.next_state[states[-1], actions[-1]])
        return Trajectories(torch.tensor([states]), torch.tensor([actions]),
                            torch.ones(1, len(actions)), torch.tensor([end == lake.goal]))


def rollout(lake: Lake, table: Tensor, starts: Tensor, horizon: int, generator: torch.Generator | None,
            greedy: bool = False) -> Trajectories:
    """Walk len(starts) episodes under a policy table [S, A], sampled or greedy, for at most ``horizon`` steps.

    An episode ends on entering a hole or the gift (the step that enters counts);
    what is left of the horizon is padding.
    """
    R = starts.shape[0]
    states = torch.zeros(R, horizon, dtype=torch.long)
    actions = torch.zeros(R, horizon, dtype=torch.long)
    mask = torch.zeros(R, horizon)
    s = starts.clone()
    alive = ~lake.terminal[s]
    reached = torch.zeros(R, dtype=torch.bool)
    for t in range(horizon):
        if not alive.any():
            break
        probs = table[s]
        a = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        states[:, t] = torch.where(alive, s, 0)
        actions[:, t] = torch.where(alive, a, 0)
        mask[:, t] = alive.float()
        s2 = lake.next_state[s, a]
        reached |= alive & (s2 == lake.goal)
        s = torch.where(alive, s2, s)
        alive = alive & ~lake.terminal[s]
    return Trajectories(states, actions, mask, reached)


def visit_rates(lake: Lake, traj: Trajectories) -> np.ndarray:
    """[nrow, ncol]: fraction of episodes that stand on each cell at some point (the final cell included)."""
    R = len(traj)
    seen = torch.zeros(R, lake.n_states, dtype=torch.bool)
    rows = torch.arange(R).unsqueeze(-1).expand_as(traj.states)
    live = traj.mask.bool()
    seen[rows[live], traj.states[live]] = True
    ends = lake.next_state[traj.states, traj.actions]
    seen[rows[live], ends[live]] = True
    return seen.float().mean(0).view(lake.nrow, lake.ncol).numpy()


def discounted_return(traj: Trajectories, gamma: float) -> Tensor:
    """gamma^(steps-1) for walks that reach the gift, 0 otherwise (the only reward is the gift's)."""
    steps = traj.mask.sum(-1)
    return torch.where(traj.reached, gamma ** (steps - 1), torch.zeros_like(steps))
