"""Every scene atom is produced, true and false, by real NLE play.

No mocks of the game: the observations come from

* seeded random play through the project's own factory (:func:`make_env` + :func:`seed_env`), and
* seeded, scripted wizard-mode games (NLE's ``wizard=True``) driven by raw keys: ``^F`` maps the
  level, ``^T`` teleports the hero to a cell picked from the observed glyphs, ``^W`` wishes for
  terrain/objects, ``^G`` creates monsters, and a wizard kit puts potions, corpses, a wand and an
  iron ball into the starting inventory.

Every observation of every game is copied and its atoms computed once, in order, with the level
memory (as the vector env does). The tests then check that each atom is true somewhere and false
somewhere, and that a few labelled situations give the atom values their meaning promises.
"""

from __future__ import annotations

import numpy as np
import pytest
from nle import nethack as nh
from nle.env.base import NLE

from nethack_moe import features as F
from nethack_moe.envs.factory import OBS_KEYS, EnvConfig, make_env, seed_env
from nethack_moe.features.glyphs import _WALKABLE

#: A fixed character (in wizard mode NLE's character string is ignored: the hero is "wizard").
OPTIONS = (*nh.NETHACKOPTIONS, "role:samurai", "race:human", "gender:male", "align:lawful")
#: The samurai's own kit uses letters a-e; wizard-kit items get the next letters, in order.
KIT_LETTERS = "fghijklmnopq"
SPEC = F.FeatureSpec(crop_size=9)
ENTER = "\r"
CTRL_F, CTRL_G, CTRL_T, CTRL_W = "\x06", "\x07", "\x14", "\x17"


class Game:
    """One seeded wizard-mode game, driven by raw keys; keeps every observation and its atoms."""

    def __init__(self, seed: tuple[int, int], kit: list[str] | None = None) -> None:
        self.env = NLE(
            observation_keys=OBS_KEYS,
            actions=tuple(range(256)),  # action i sends key i
            options=OPTIONS,
            wizard=True,
            allow_all_yn_questions=True,
            allow_all_modes=True,
            spawn_monsters=False,  # no random arrivals: the scripts stay on track
            max_episode_steps=10**6,
            fix_moon_phase=True,
        )
        seed_env(self.env, *seed)
        obs, _ = self.env.reset(options={"wizkit_items": kit} if kit else None)
        self.kit = {name: KIT_LETTERS[i] for i, name in enumerate(kit or [])}
        self.memory = F.new_memory(1)
        self.obs: list[dict[str, np.ndarray]] = []
        self.atoms: list[np.ndarray] = []
        self.labels: dict[str, int] = {}
        self._record(obs)

    def close(self) -> None:
        self.env.close()

    def _record(self, obs) -> None:
        o = {k: np.array(v, copy=True) for k, v in obs.items()}  # NLE reuses its arrays
        _, _, atoms = F.compute_features(
            o["glyphs"][None],
            o["blstats"][None],
            o["message"][None],
            o["tty_chars"][None],
            SPEC,
            memory=self.memory,
        )
        self.obs.append(o)
        self.atoms.append(atoms[0].copy())

    # ---- what the last observation shows ----
    @property
    def last(self) -> dict[str, np.ndarray]:
        return self.obs[-1]

    @property
    def message(self) -> str:
        return bytes(self.last["message"]).rstrip(b"\0").decode("latin-1")

    @property
    def hero(self) -> tuple[int, int]:
        bl = self.last["blstats"]
        return int(bl[nh.NLE_BL_Y]), int(bl[nh.NLE_BL_X])

    def stat(self, index: int) -> int:
        return int(self.last["blstats"][index])

    def atom(self, name: str) -> bool:
        return bool(self.atoms[-1][F.ATOM_INDEX[name]])

    def cells(self, table: np.ndarray) -> list[tuple[int, int]]:
        """Map cells whose glyph is in ``table``, row-major."""
        ys, xs = np.nonzero(table[self.last["glyphs"]])
        return [(int(y), int(x)) for y, x in zip(ys, xs, strict=True)]

    def is_(self, table: np.ndarray, y: int, x: int) -> bool:
        return 0 <= y < F.ROWS and 0 <= x < F.COLS and bool(table[self.last["glyphs"][y, x]])

    # ---- acting ----
    def keys(self, keys: str, settle: bool = True) -> None:
        for c in keys:
            obs, _, done, _, _ = self.env.step(ord(c))
            self._record(obs)
            assert not done, f"game ended on key {c!r}: {self.message!r}"
        if settle:
            self.settle()

    def settle(self) -> None:
        """Click through --More-- and refuse wizard mode's "Die?" (the hero then lives on)."""
        for _ in range(30):
            if b"--More--" in self.last["tty_chars"].tobytes():
                self.keys(ENTER, settle=False)
            elif self.message.startswith("Die?"):
                self.keys("n", settle=False)
            else:
                return

    def mark(self, label: str) -> None:
        """Name the last observation (for the situation checks)."""
        self.labels[label] = len(self.obs) - 1

    def teleport(self, y: int, x: int) -> None:
        """Wizard ``^T`` to map cell (y, x): the cursor starts on the hero; HJKL move it by 8."""
        hy, hx = self.hero
        dy, dx = y - hy, x - hx
        cursor = ("L" if dx > 0 else "H") * (abs(dx) // 8) + ("l" if dx > 0 else "h") * (
            abs(dx) % 8
        )
        cursor += ("J" if dy > 0 else "K") * (abs(dy) // 8) + ("j" if dy > 0 else "k") * (
            abs(dy) % 8
        )
        self.keys(CTRL_T + cursor + ".")
        assert self.hero == (y, x), f"teleport to {(y, x)} failed: {self.message!r}"

    def step_onto(self, table: np.ndarray) -> None:
        """Walk one orthogonal step onto a neighbouring cell whose glyph is in ``table``."""
        y, x = self.hero
        for key, (dy, dx) in (("h", (0, -1)), ("l", (0, 1)), ("k", (-1, 0)), ("j", (1, 0))):
            if self.is_(table, y + dy, x + dx):
                self.keys(key)
                assert self.hero == (y + dy, x + dx), self.message
                return
        raise AssertionError(f"no neighbour of {(y, x)} to step onto")

    def use(self, command: str, item: str) -> None:
        """Apply an inventory command (``q``uaff, ``e``at, ``r``ead, ``d``rop) to a kit item."""
        self.keys(command + self.kit[item])


#: Room floor on the map: lit, or remembered out of sight (after ``^F`` most of it is "dark").
ROOM_FLOOR = F.IS_FLOOR | F.IS_DARK_FLOOR


def _open_floor(g: Game) -> tuple[int, int]:
    """A room cell whose 8 neighbours are all room floor (the first in row-major order)."""
    for y, x in g.cells(ROOM_FLOOR):
        if all(g.is_(ROOM_FLOOR, y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            return y, x
    raise AssertionError("no open room floor on this level")


def tour_game() -> Game:
    """Map, doors, corridors, traps, water, boulders, monsters and stairs (seed 1/1)."""
    g = Game((1, 1))
    g.keys(CTRL_F)  # magic mapping
    glyphs = g.last["glyphs"]
    walkable = _WALKABLE[glyphs]
    # a corridor dead end: a corridor cell with at most one walkable cell around it
    dead_ends = [
        (y, x)
        for y, x in g.cells(F.IS_CORRIDOR)
        if walkable[y - 1 : y + 2, x - 1 : x + 2].sum() - 1 <= 1
    ]
    assert dead_ends, "seed has no corridor dead end"
    g.teleport(*dead_ends[0])
    g.mark("corridor dead end")
    # both sides of a closed door that has room floor on one side and corridor on the other
    for y, x in g.cells(F.IS_CLOSED_DOOR):
        sides = [(y + dy, x + dx) for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0))]
        floor = [c for c in sides if g.is_(ROOM_FLOOR, *c)]
        corridor = [c for c in sides if g.is_(F.IS_CORRIDOR, *c)]
        if floor and corridor:
            break
    else:
        raise AssertionError("no closed door between a room and a corridor")
    g.teleport(*corridor[0])
    g.mark("corridor next to a closed door")
    g.teleport(*floor[0])
    g.mark("room floor next to a closed door")
    # a known trap, seen from a floor cell next to it
    traps = [
        (y + dy, x + dx)
        for y, x in g.cells(F.IS_TRAP)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if g.is_(ROOM_FLOOR, y + dy, x + dx)
    ]
    assert traps, "seed shows no trap next to room floor"
    g.teleport(*traps[0])
    g.mark("next to a trap")
    # the middle of a lit room
    g.teleport(*_open_floor(g))
    g.mark("middle of a lit room")
    g.keys(":")
    g.mark("looked at empty floor")
    # wizard wishes: a pool and a boulder are made under the hero; step off them
    g.keys(CTRL_W + "pool" + ENTER)
    g.step_onto(F.IS_FLOOR)
    g.mark("next to a pool")
    g.teleport(*_open_floor(g))
    g.keys(CTRL_W + "boulder" + ENTER)
    g.step_onto(F.IS_FLOOR)
    g.mark("next to a boulder")
    # monsters made next to the hero
    g.teleport(*_open_floor(g))
    g.keys(CTRL_G + "floating eye" + ENTER)
    g.mark("next to a floating eye")
    for _ in range(3):
        g.keys(CTRL_G + "jackal" + ENTER)
    g.mark("among jackals")
    # the downstairs (teleport's cursor jumps to it with '>'), then down
    g.keys(CTRL_T + ">.")
    g.mark("on the downstairs")
    g.keys(">")
    g.mark("arrived on level 2")
    return g


BODY_KIT = [
    "heavy iron ball",
    "food ration",
    "cursed scroll of light",
    "wand of striking (0:30)",
    "bat corpse",
    "potion of confusion",
    "2 potions of gain level",
]


def body_game() -> Game:
    """Burden, items underfoot, satiation, darkness, wounds, stun, confusion, levels (seed 5/5)."""
    g = Game((5, 5), BODY_KIT)
    g.mark("carrying an iron ball")
    g.use("d", "heavy iron ball")
    g.keys(":")
    g.mark("looked at the dropped iron ball")
    g.use("r", "cursed scroll of light")
    g.mark("in a room darkened by a cursed scroll of light")
    g.keys(chr(0x80 | ord("p")))  # M-p: #pray
    g.mark("asked whether to pray")
    g.keys("n")
    for _ in range(40):  # zap the wand of striking at oneself until wounded but alive
        g.use("z", "wand of striking (0:30)")
        g.keys(".")
        if g.atom("hp_low") and g.stat(nh.NLE_BL_HP) > 0:
            break
    g.mark("badly wounded")
    g.keys("e")
    g.mark("asked what to eat")
    g.keys(g.kit["bat corpse"])
    g.mark("after eating a bat")
    g.use("q", "potion of confusion")
    g.mark("after quaffing confusion")
    g.use("q", "2 potions of gain level")
    g.use("q", "2 potions of gain level")
    g.mark("experience level 3")
    g.use("e", "food ration")  # last: a satiated hero is asked whether to go on eating
    g.mark("after eating a food ration")
    return g


HUNGER_KIT = ["potion of blindness", "potion of hallucination"]


def hunger_game() -> Game:
    """A long wait (hunger, weakness, a corpse going bad), then blindness and hallucination."""
    g = Game((3, 3), HUNGER_KIT)
    wished_at = None
    for _ in range(60):
        g.keys("50s")  # search 50 times
        turn = g.stat(nh.NLE_BL_TIME)
        if wished_at is None and g.stat(nh.NLE_BL_HUNGER) >= F.HUNGER_HUNGRY:
            g.mark("hungry")
            g.keys(CTRL_W + "cursed newt corpse" + ENTER)  # rots while we wait for weakness
            wished_at = turn
        weak = g.stat(nh.NLE_BL_HUNGER) >= F.HUNGER_WEAK
        if weak and wished_at is not None and turn - wished_at > 150:  # surely tainted by now
            break
    g.mark("weak from hunger")
    g.use("q", "potion of blindness")
    g.mark("blind in a lit room")
    g.use("q", "potion of hallucination")
    g.mark("hallucinating")
    g.keys("e")
    assert g.message.startswith("What do you want to eat? [h "), g.message  # only the corpse
    g.keys("h")
    g.mark("after eating a tainted corpse")
    return g


def random_play(seed: int, steps: int) -> list[np.ndarray]:
    """Atoms of a seeded random-action game through the project's env factory."""
    env = make_env(EnvConfig(max_episode_steps=steps)).unwrapped
    seed_env(env, seed, seed)
    obs, _ = env.reset()
    rng = np.random.default_rng(seed)
    memory = F.new_memory(1)
    out = []
    for _ in range(steps):
        _, _, a = F.compute_features(
            obs["glyphs"][None],
            obs["blstats"][None],
            obs["message"][None],
            obs["tty_chars"][None],
            SPEC,
            memory=memory,
        )
        out.append(a[0].copy())
        obs, _, done, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if done or truncated:
            break
    env.close()
    return out


class Played:
    def __init__(self) -> None:
        self.games = {"tour": tour_game(), "body": body_game(), "hunger": hunger_game()}
        rows = [a for g in self.games.values() for a in g.atoms]
        for g in self.games.values():
            g.close()
        for seed in (11, 12):
            rows += random_play(seed, 300)
        self.atoms = np.stack(rows)  # [N, N_ATOMS] bool

    def situation(self, label: str) -> tuple[Game, int]:
        for g in self.games.values():
            if label in g.labels:
                return g, g.labels[label]
        raise KeyError(label)


@pytest.fixture(scope="module")
def played() -> Played:
    return Played()


@pytest.mark.parametrize("atom", F.ATOMS)
def test_atom_is_true_somewhere_and_false_somewhere(played, atom):
    col = played.atoms[:, F.ATOM_INDEX[atom]]
    n = len(col)
    assert col.any(), f"atom {atom!r} is never true in {n} real observations"
    assert not col.all(), f"atom {atom!r} is never false in {n} real observations"


#: (situation, atom, value its meaning promises); the situations are labelled in the scripts.
SITUATIONS = [
    ("corridor dead end", "dead_end", True),
    ("corridor dead end", "unexplored_adjacent", True),
    ("corridor dead end", "in_room", False),
    ("corridor next to a closed door", "closed_door_adjacent", True),
    ("corridor next to a closed door", "door_adjacent", True),
    ("corridor next to a closed door", "in_corridor", True),
    pytest.param(
        "corridor next to a closed door",
        "in_room",
        False,
    ),
    ("room floor next to a closed door", "in_room", True),
    ("room floor next to a closed door", "in_corridor", False),
    ("room floor next to a closed door", "closed_door_adjacent", True),
    ("next to a trap", "trap_adjacent", True),
    ("middle of a lit room", "in_room", True),
    ("middle of a lit room", "in_corridor", False),
    ("middle of a lit room", "dark_room", False),
    ("middle of a lit room", "dead_end", False),
    ("middle of a lit room", "unexplored_adjacent", False),
    ("middle of a lit room", "door_adjacent", False),
    ("middle of a lit room", "trap_adjacent", False),
    ("middle of a lit room", "question_prompt", False),
    ("asked what to eat", "question_prompt", True),
    pytest.param(
        "looked at empty floor",
        "item_here",
        False,
    ),
    ("next to a pool", "water_adjacent", True),
    ("next to a boulder", "boulder_adjacent", True),
    ("next to a floating eye", "floating_eye_adjacent", True),
    ("next to a floating eye", "hostile_adjacent", True),
    ("among jackals", "many_hostiles", True),
    ("among jackals", "hostile_near", True),
    ("on the downstairs", "on_downstairs", True),
    ("on the downstairs", "downstairs_visible", True),
    ("on the downstairs", "deeper_than_1", False),
    ("arrived on level 2", "deeper_than_1", True),
    ("carrying an iron ball", "encumbered", True),
    ("carrying an iron ball", "hp_full", True),
    ("carrying an iron ball", "low_xp", True),
    ("carrying an iron ball", "prayer_ready", False),
    ("looked at the dropped iron ball", "item_here", True),
    ("looked at the dropped iron ball", "encumbered", False),
    ("after eating a food ration", "satiated", True),
    pytest.param(
        "in a room darkened by a cursed scroll of light",
        "dark_room",
        True,
    ),
    pytest.param(
        "asked whether to pray",
        "question_prompt",
        True,
    ),
    ("badly wounded", "hp_low", True),
    ("badly wounded", "hp_full", False),
    ("after eating a bat", "stunned", True),
    ("after quaffing confusion", "confused", True),
    ("experience level 3", "low_xp", False),
    ("blind in a lit room", "blind", True),
    pytest.param(
        "blind in a lit room",
        "dark_room",
        False,
    ),
    ("hallucinating", "hallucinating", True),
    ("hungry", "hungry", True),
    ("hungry", "weak", False),
    ("weak from hunger", "weak", True),
    ("weak from hunger", "hungry", False),
    ("weak from hunger", "prayer_ready", True),
    ("after eating a tainted corpse", "sick", True),
]


@pytest.mark.parametrize(("label", "atom", "expected"), SITUATIONS)
def test_atom_in_a_known_situation(played, label, atom, expected):
    g, i = played.situation(label)
    o = g.obs[i]
    msg = bytes(o["message"]).rstrip(b"\0").decode("latin-1")
    y, x = int(o["blstats"][nh.NLE_BL_Y]), int(o["blstats"][nh.NLE_BL_X])
    got = bool(g.atoms[i][F.ATOM_INDEX[atom]])
    assert got == expected, (
        f"{atom} is {got} in situation {label!r} (hero at y={y} x={x}, message {msg!r}); "
        f"true atoms: {F.atom_names_true(g.atoms[i])}"
    )
