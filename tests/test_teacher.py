"""The scripted teacher (issue 18): its branches on real seeded games, reproducibility, the env
option that turns it on (and changes nothing when off), resume, and ``evaluate --baseline diver``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from nle import nethack as nh
from nle.env.tasks import TASK_ACTIONS

from nethack_moe import features as F
from nethack_moe.envs import teacher as T
from nethack_moe.envs import teacher_tables as TT
from nethack_moe.envs.factory import EnvConfig, SeedPlan
from nethack_moe.envs.vector import VectorEnv
from nethack_moe.evaluation.evaluate import evaluate
from nethack_moe.evaluation.players import BASELINES, DiverPlayer, make_baseline
from nethack_moe.features.glyphs import _B_CORRIDOR, _K_WALL
from nethack_moe.game import actions as GA
from nethack_moe.game.navigation import DIRS
from nethack_moe.models.acting import Obs, Teacher

STEPS = 300
#: Seeds whose first 300 steps show every common branch between them (checked below).
SEEDS = (100000, 100005)


@dataclass
class Trace:
    """What the teacher saw and advised at every step of one seeded episode."""

    action: list[int] = field(default_factory=list)
    branch: list[int] = field(default_factory=list)
    glyphs: list[np.ndarray] = field(default_factory=list)
    blstats: list[np.ndarray] = field(default_factory=list)
    atoms: list[np.ndarray] = field(default_factory=list)
    stairs: list[np.ndarray] = field(default_factory=list)
    seen: list[np.ndarray] = field(default_factory=list)


def _play(seed: int, steps: int = STEPS) -> Trace:
    """The diver plays ``seed`` for ``steps`` steps through a real in-process vector env."""
    cfg = EnvConfig(teacher=True, max_episode_steps=steps + 10)
    tr = Trace()
    with VectorEnv(cfg, 1, 0, SeedPlan("eval", base=seed)) as venv:
        b, group = venv.buf, venv._local
        assert group is not None
        for _ in range(steps):
            tr.action.append(int(b.teacher_action[0]))
            tr.branch.append(int(b.teacher_branch[0]))
            tr.glyphs.append(group.glyphs[0].copy())
            tr.blstats.append(b.blstats[0].copy())
            tr.atoms.append(b.atoms[0].copy())
            tr.stairs.append(b.mem_stairs[0].copy())
            tr.seen.append(group.teacher.seen[0].copy())
            venv.step(b.teacher_action.copy())
            if b.episode[0, 0] > 0 or b.terminated[0] or b.truncated[0]:
                break
    return tr


@pytest.fixture(scope="module")
def traces() -> dict[int, Trace]:
    return {s: _play(s) for s in SEEDS}


MOVES = set(GA.MOVE_ACTIONS.tolist())
RUSHES = set(GA.RUSH_ACTIONS.tolist())


def _steps(traces: dict[int, Trace], name: str) -> list[tuple[Trace, int]]:
    k = T.BRANCH_INDEX[name]
    return [(tr, t) for tr in traces.values() for t, b in enumerate(tr.branch) if b == k]


def _hero(tr: Trace, t: int) -> tuple[int, int]:
    return int(tr.blstats[t][nh.NLE_BL_Y]), int(tr.blstats[t][nh.NLE_BL_X])


# ------------------------------------------------------------------------ branch names, actions
def test_branch_names_and_actions_are_valid(traces):
    assert T.BRANCHES[:7] == (
        "prompt", "fight", "descend", "to_stairs", "explore", "search", "kick"
    )  # fmt: skip
    assert len(set(T.BRANCHES)) == len(T.BRANCHES)
    for tr in traces.values():
        assert all(0 <= a < len(TASK_ACTIONS) for a in tr.action)
        assert all(0 <= b < len(T.BRANCHES) for b in tr.branch)
    assert T.branch_names(np.array([-1, 0, 2])) == ["none", "prompt", "descend"]


def test_rush_and_step_actions_follow_nle_enums():
    from nle.nethack.actions import CompassDirection, CompassDirectionLonger

    for k in range(8):
        assert TASK_ACTIONS[GA.MOVE_ACTIONS[k]] == list(CompassDirection)[k]
        assert TASK_ACTIONS[GA.RUSH_ACTIONS[k]] == list(CompassDirectionLonger)[k]
        assert GA.MOVE_DIR[GA.MOVE_ACTIONS[k]] == k and GA.MOVE_DIR[GA.RUSH_ACTIONS[k]] == k


# ------------------------------------------------------------------------ each branch, for real
def test_every_common_branch_occurs_on_real_games(traces):
    seen = {T.BRANCHES[b] for tr in traces.values() for b in tr.branch}
    assert {"prompt", "fight", "descend", "to_stairs", "explore", "search", "kick", "rest"} <= seen


def test_prompt_branch_answers_more_and_questions(traces):
    steps = _steps(traces, "prompt")
    assert steps
    for tr, t in steps:
        at = tr.atoms[t]
        assert at[F.ATOM_INDEX["more_prompt"]] or at[F.ATOM_INDEX["question_prompt"]]
        assert tr.action[t] == GA.MORE_ACTION
    # and every --More-- on screen is answered by this branch
    for tr in traces.values():
        for t, at in enumerate(tr.atoms):
            if at[F.ATOM_INDEX["more_prompt"]]:
                assert T.BRANCHES[tr.branch[t]] == "prompt"


def test_fight_branch_hits_an_adjacent_hostile(traces):
    steps = _steps(traces, "fight")
    assert steps
    hit = 0
    for tr, t in steps:
        a = tr.action[t]
        if a in MOVES:  # a blow: the cell it goes to holds something to hit
            y, x = _hero(tr, t)
            k = int(GA.MOVE_DIR[a])
            g = int(tr.glyphs[t][y + DIRS[k, 0], x + DIRS[k, 1]])
            assert TT.TEACHER_FLAGS[g] & TT.T_TARGET
            assert not TT.TEACHER_FLAGS[g] & TT.T_DEADLY
            hit += 1
        else:  # a kick at a monster it cannot reach diagonally
            assert a == GA.KICK_ACTION
    assert hit > 0


def test_descend_branch_presses_down_on_the_known_stairs(traces):
    steps = _steps(traces, "descend")
    assert steps
    for tr, t in steps:
        y, x = _hero(tr, t)
        depth = int(tr.blstats[t][nh.NLE_BL_DEPTH])
        assert tuple(tr.stairs[t]) == (depth, y, x)
        assert tr.atoms[t][F.ATOM_INDEX["on_downstairs"]]
        assert tr.action[t] == GA.DOWN_ACTION
        assert int(tr.blstats[t + 1][nh.NLE_BL_DEPTH]) == depth + 1  # and it worked


def test_to_stairs_and_explore_branches_walk(traces):
    for name in ("to_stairs", "explore"):
        steps = _steps(traces, name)
        assert steps, name
        assert all(tr.action[t] in MOVES | RUSHES for tr, t in steps)
    for tr, t in _steps(traces, "to_stairs"):
        depth = int(tr.blstats[t][nh.NLE_BL_DEPTH])
        on_map = (TT.TEACHER_FLAGS[tr.glyphs[t]] & TT.T_TRAPDOOR).any()
        assert tr.stairs[t][0] == depth or on_map  # the stairs (or a trap door) are known
    for tr, t in _steps(traces, "explore"):  # known stairs are only passed by when unreachable
        assert not tr.atoms[t][F.ATOM_INDEX["on_downstairs"]]
    rushes = sum(tr.action[t] in RUSHES for tr, t in _steps(traces, "explore"))
    assert rushes > 0  # straight stretches are rushed


def test_search_and_kick_branches(traces):
    search = _steps(traces, "search")
    assert search and any(tr.action[t] == GA.SEARCH_ACTION for tr, t in search)
    assert all(tr.action[t] in MOVES | RUSHES | {GA.SEARCH_ACTION} for tr, t in search)
    kick = _steps(traces, "kick")
    assert kick
    assert any(tr.action[t] == GA.KICK_ACTION for tr, t in kick)
    for tr, t in kick:
        if (
            tr.action[t] == GA.KICK_ACTION
        ):  # next to a closed door, which it answers the prompt with
            assert tr.atoms[t][F.ATOM_INDEX["closed_door_adjacent"]]
            assert T.BRANCHES[tr.branch[t + 1]] == "kick" and tr.action[t + 1] in MOVES


def test_corridors_are_rushed_and_the_cells_passed_are_seen(traces):
    corridor = F.KERNEL_FLAGS & _B_CORRIDOR
    into, bent, revealed, marked = 0, 0, 0, 0
    for tr in traces.values():
        for t in range(len(tr.action) - 1):
            a = tr.action[t]
            if a not in RUSHES or T.BRANCHES[tr.branch[t + 1]] == "prompt":
                continue
            (y, x), (y1, x1) = _hero(tr, t), _hero(tr, t + 1)
            k = int(GA.MOVE_DIR[a])
            into += bool(corridor[tr.glyphs[t][y + DIRS[k, 0], x + DIRS[k, 1]]])
            steps = max(abs(y1 - y), abs(x1 - x))
            if steps < 2 or (y1 - y, x1 - x) == (steps * DIRS[k, 0], steps * DIRS[k, 1]):
                continue
            if int(tr.blstats[t + 1][nh.NLE_BL_DEPTH]) != int(tr.blstats[t][nh.NLE_BL_DEPTH]):
                continue
            bent += 1  # along a corridor's bends: the corridor it revealed is no frontier
            new = corridor[tr.glyphs[t + 1]].astype(bool) & ~corridor[tr.glyphs[t]].astype(bool)
            revealed += int(new.sum())
            marked += int(tr.seen[t + 1][new].sum())
    assert into > 0 and bent > 0
    # seen along the shortest walk back, which is nearly always the way the rush went
    assert marked >= 0.9 * revealed > 0


def test_no_rush_when_hungry(traces):
    hungry = [
        (tr, t)
        for tr in traces.values()
        for t in range(len(tr.action))
        if tr.blstats[t][nh.NLE_BL_HUNGER] >= F.HUNGER_HUNGRY
    ]
    assert hungry  # rushes cost turns, turns cost food
    assert not any(tr.action[t] in RUSHES for tr, t in hungry)


def test_a_seeded_episode_is_reproducible(traces):
    again = _play(SEEDS[0])
    tr = traces[SEEDS[0]]
    assert again.action == tr.action and again.branch == tr.branch


# ------------------------------------------------------------------------ moves that fail, rest
@dataclass
class Log:
    """Per step of one seeded episode: message, hero, advice, HP and some teacher memory."""

    msg: list[str] = field(default_factory=list)
    pos: list[tuple[int, int]] = field(default_factory=list)
    action: list[int] = field(default_factory=list)
    branch: list[str] = field(default_factory=list)
    hp: list[tuple[int, int]] = field(default_factory=list)
    glyphs: list[np.ndarray] = field(default_factory=list)
    doors: list[np.ndarray] = field(default_factory=list)
    failed: list[np.ndarray] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    calm: list[int] = field(default_factory=list)


def _play_log(seed: int, steps: int) -> Log:
    """The diver plays ``seed`` (dev seeds, outside E200) for ``steps`` steps."""
    lg = Log()
    with VectorEnv(EnvConfig(teacher=True), 1, 0, SeedPlan("eval", base=seed)) as venv:
        b, group = venv.buf, venv._local
        assert group is not None and group.teacher is not None
        for _ in range(steps):
            bl = b.blstats[0]
            lg.msg.append(bytes(group.message[0]).rstrip(b"\0").decode(errors="replace"))
            lg.pos.append((int(bl[nh.NLE_BL_Y]), int(bl[nh.NLE_BL_X])))
            lg.action.append(int(b.teacher_action[0]))
            lg.branch.append(T.BRANCHES[int(b.teacher_branch[0])])
            lg.hp.append((int(bl[nh.NLE_BL_HP]), int(bl[nh.NLE_BL_HPMAX])))
            lg.glyphs.append(group.glyphs[0].copy())
            lg.doors.append(group.teacher.doors[0].copy())
            lg.failed.append(group.teacher.failed[0].copy())
            lg.held.append(int(group.teacher.held[0]))
            lg.depth.append(int(bl[nh.NLE_BL_DEPTH]))
            lg.calm.append(int(group.teacher.calm[0]))
            venv.step(b.teacher_action.copy())
    return lg


def test_a_stuck_door_is_tried_until_it_opens():
    lg = _play_log(300039, 20)  # a closed door that resists six times before it opens
    resisted = [t for t, m in enumerate(lg.msg) if "door resists" in m]
    assert len(resisted) >= 4  # more than the 3 refused moves that block a cell
    t0 = resisted[0] - 1
    y, x = lg.pos[t0]
    k = int(GA.MOVE_DIR[lg.action[t0]])
    door = (y + DIRS[k, 0], x + DIRS[k, 1])
    assert all(lg.failed[t][door] == 0 for t in resisted)
    assert door in lg.pos[resisted[-1] :]  # and it went through


def test_a_doorless_doorway_allows_diagonal_moves():
    lg = _play_log(300073, 130)  # used to step in and out of a doorway from step 100 on
    kf = F.KERNEL_FLAGS
    diag = 0
    for t in range(len(lg.pos) - 1):
        (y, x), g = lg.pos[t], lg.glyphs[t]
        between_walls = (
            (kf[g[y, x - 1]] & kf[g[y, x + 1]]) | (kf[g[y - 1, x]] & kf[g[y + 1, x]])
        ) & _K_WALL
        if between_walls and lg.doors[t][y, x] == 1 and GA.MOVE_DIR[lg.action[t]] >= 4:
            diag += lg.pos[t + 1] != (y, x)  # out of a doorway without a door, diagonally
    assert diag > 0
    assert len(set(lg.pos[90:130])) > 5  # no ping-pong between two cells


def test_failed_moves_while_a_trap_holds_the_hero_block_nothing():
    lg = _play_log(300119, 150)  # a bear trap holds the hero for a few turns
    t0 = next(t for t, m in enumerate(lg.msg) if "bear trap closes" in m)
    held = [t for t in range(t0, len(lg.pos)) if lg.held[t]]
    assert len(held) >= 3 and all(lg.pos[t] == lg.pos[t0] for t in held)
    y, x = lg.pos[t0]
    added = lg.failed[held[-1]].astype(int) - lg.failed[t0]  # counts while held
    assert added[y - 1 : y + 2, x - 1 : x + 2].max() == 0
    assert any(p != lg.pos[t0] for p in lg.pos[held[-1] + 1 :])  # out of it, it moves on


def test_rest_branch_searches_in_place_below_half_hp():
    lg = _play_log(300119, 120)
    rest = [t for t, b in enumerate(lg.branch) if b == "rest"]
    assert rest
    for t in rest:
        hp, hpmax = lg.hp[t]
        assert 2 * hp < hpmax and lg.action[t] == GA.SEARCH_ACTION
        y, x = lg.pos[t]
        near = TT.TEACHER_FLAGS[lg.glyphs[t][y - 1 : y + 2, x - 1 : x + 2]] & TT.T_TARGET
        near[1, 1] = 0  # the hero
        assert not near.any()  # nothing to hit next to it
    after = lg.hp[rest[-1] + 1 :]
    assert any(hp > lg.hp[rest[0]][0] for hp, _ in after)  # it heals, and goes on


def _back_and_forth(lg: Log, lo: int, hi: int) -> list[int]:
    """Steps in ``[lo, hi)`` that bring the hero back to the cell it left the step before."""
    return [t for t in range(max(lo, 2), hi) if lg.pos[t] == lg.pos[t - 2] != lg.pos[t - 1]]


def test_the_search_spot_is_kept_until_searched_out():
    lg = _play_log(300043, 200)  # re-planned every step, it went back and forth from step 150
    search = [t for t, b in enumerate(lg.branch) if b == "search"]
    assert len(search) > 60
    assert len(_back_and_forth(lg, 100, 200)) <= 5
    assert sum(lg.action[t] == GA.SEARCH_ACTION for t in search) > len(search) / 2


def test_coming_back_to_the_last_cell_stops_rushes_for_a_while():
    lg = _play_log(300043, 200)
    back = _back_and_forth(lg, 0, 200)
    assert back
    rush = {int(a) for a in GA.RUSH_ACTIONS}
    for t in back:
        assert lg.calm[t] == TT.CALM_STEPS
        calm = range(t, min(t + TT.CALM_STEPS, len(lg.action)))
        assert not any(lg.action[u] in rush for u in calm)


def test_stairs_under_an_object_are_taken():
    lg = _play_log(300251, 224)  # the down staircase lies under an object: the map shows it
    t = next(t for t, m in enumerate(lg.msg) if "staircase down here" in m)
    assert (lg.branch[t], lg.action[t]) == ("descend", GA.DOWN_ACTION)
    assert lg.depth[t + 1] == lg.depth[t] + 1


# ------------------------------------------------------------------------ monster data
def test_passive_monsters_come_from_nethacks_monster_table():
    idx = {nh.permonst(i).mname: i for i in range(nh.NUMMONS)}
    for name in ("floating eye", "cockatrice", "green slime"):
        assert TT.DEADLY_MON[idx[name]] and TT.PASSIVE_MON[idx[name]], name
    for name in ("acid blob", "gas spore", "brown mold", "blue jelly"):
        assert TT.PASSIVE_MON[idx[name]] and not TT.DEADLY_MON[idx[name]], name
    for name in ("giant ant", "newt", "jackal", "lichen", "gnome lord"):
        assert not TT.PASSIVE_MON[idx[name]], name
    att = TT.monster_attacks()
    assert tuple(att[idx["floating eye"], 0]) == (TT.AT_NONE, TT.AD_PLYS, 0, 70)


# ------------------------------------------------------------------------ the env option
def test_teacher_off_changes_nothing():
    acts = np.random.default_rng(0).integers(0, len(TASK_ACTIONS), 120)
    out = {}
    for on in (False, True):
        with VectorEnv(EnvConfig(teacher=on), 2, 0, SeedPlan("eval", base=100000)) as venv:
            b = venv.buf
            rows = []
            for t in range(120):
                rows.append((b.state.copy(), b.crop.copy(), b.atoms.copy(), b.reward.copy(),
                             b.teacher_action.copy(), b.teacher_branch.copy()))  # fmt: skip
                venv.step(np.array([acts[t], acts[-t - 1]]))
            out[on] = rows
    for off, on in zip(out[False], out[True], strict=True):
        for x, y in zip(off[:4], on[:4], strict=True):
            assert np.array_equal(x, y)  # features (hint included) and rewards are the same
        assert (off[4] == -1).all() and (off[5] == -1).all()
        assert (on[4] >= 0).all() and (on[5] >= 0).all()


def test_teacher_needs_the_23_actions():
    with pytest.raises(ValueError, match="env.teacher needs"):
        EnvConfig(task="NetHackChallenge-v0", teacher=True).validate()


def test_resume_rebuilds_the_teachers_memory():
    cfg = EnvConfig(teacher=True)
    with VectorEnv(cfg, 1, 0, SeedPlan("eval", base=100004)) as venv:
        for _ in range(150):
            venv.step(venv.buf.teacher_action.copy())
        state = venv.get_state()
        want = [(int(venv.buf.teacher_action[0]), int(venv.buf.teacher_branch[0]))]
        for _ in range(60):
            venv.step(venv.buf.teacher_action.copy())
            want.append((int(venv.buf.teacher_action[0]), int(venv.buf.teacher_branch[0])))
    with VectorEnv(cfg, 1, 0, SeedPlan("eval", base=100004)) as venv:
        venv.set_state(state)
        got = [(int(venv.buf.teacher_action[0]), int(venv.buf.teacher_branch[0]))]
        for _ in range(60):
            venv.step(venv.buf.teacher_action.copy())
            got.append((int(venv.buf.teacher_action[0]), int(venv.buf.teacher_branch[0])))
    assert got == want


# ------------------------------------------------------------------------ the player
def test_diver_player_plays_the_teachers_action():
    assert "diver" in BASELINES
    p = make_baseline("diver", len(TASK_ACTIONS))
    assert isinstance(p, DiverPlayer) and p.needs_teacher
    obs = Obs(torch.zeros(2, F.STATE_DIM), torch.zeros(2, 9, 9), torch.zeros(2, F.N_ATOMS))
    teacher = Teacher(torch.tensor([5, 22]), torch.tensor([4, 5]))
    assert p.choose(obs, teacher).action.tolist() == [5, 22]
    with pytest.raises(ValueError, match="env.teacher"):
        p.choose(obs)


def test_evaluate_baseline_diver(tmp_path):
    out = tmp_path / "d.json"
    evaluate([], episodes=2, num_envs=2, workers=0, out=out, max_steps=120,
             baselines=["diver", "hint-follower"])  # fmt: skip
    data = json.loads(out.read_text())
    d = data["checkpoints"]["diver"]
    assert d["player"] == "diver"
    assert [e["seed"] for e in d["episodes"]] == [100000, 100001]
    assert d["summary"]["mean"] > 0
    # the diver plays the teacher's action: its agreement with the logged advice is exact
    agree = d["summary"]["teacher"]["agreement"]
    assert all(a["taken"] == 1.0 for a in agree.values()) and len(agree) > 2
    assert "teacher" not in data["checkpoints"]["hint-follower"]["summary"]
