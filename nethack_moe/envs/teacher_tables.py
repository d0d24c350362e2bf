"""What the teacher's kernel reads besides the observation: NetHack's own monster table through NLE
(which monsters hurt the one who hits them: passive, exploding, paralysing, stoning, sliming
attacks), the per-glyph flags built from it (targets, passive and deadly monsters, trap doors),
and the rules' limits (searches, kicks, eat commands, rushes)."""

from __future__ import annotations

import ctypes

import numpy as np
from nle import nethack as nh

from nethack_moe import features as F
from nethack_moe.features.glyphs import (
    _cmap_index,
)

# ---------------------------------------------------------------------------------------------
# NetHack's monster table: which monsters hurt the one who hits them
# ---------------------------------------------------------------------------------------------
#: Attack and damage types of NetHack 3.6's include/monattk.h (NLE exports no names for them).
AT_NONE, AT_BOOM = 0, 14
AD_PLYS, AD_STON, AD_SLIM = 14, 18, 40
NATTK = 6


class _Attack(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ubyte) for n in ("aatyp", "adtyp", "damn", "damd")]


class _Permonst(ctypes.Structure):
    """NLE's ``struct permonst`` (NetHack 3.6 plus NLE's ``difficulty``), checked field by field
    against ``nle.nethack.permonst`` before use."""

    _fields_ = [
        ("mname", ctypes.c_char_p),
        ("mlet", ctypes.c_char),
        ("mlevel", ctypes.c_byte),
        ("mmove", ctypes.c_byte),
        ("ac", ctypes.c_byte),
        ("mr", ctypes.c_byte),
        ("maligntyp", ctypes.c_byte),
        ("geno", ctypes.c_ushort),
        ("mattk", _Attack * NATTK),
        ("cwt", ctypes.c_ushort),
        ("cnutrit", ctypes.c_ushort),
        ("msound", ctypes.c_ubyte),
        ("msize", ctypes.c_ubyte),
        ("mresists", ctypes.c_ubyte),
        ("mconveys", ctypes.c_ubyte),
        ("mflags1", ctypes.c_ulong),
        ("mflags2", ctypes.c_ulong),
        ("mflags3", ctypes.c_ushort),
        ("difficulty", ctypes.c_ubyte),
        ("mcolor", ctypes.c_ubyte),
    ]


_CHECKED = ("mlevel", "mmove", "ac", "mr", "geno", "cwt", "cnutrit", "msound", "msize",
            "mresists", "mconveys", "mflags1", "mflags2", "mflags3", "difficulty", "mcolor")  # fmt: skip


def monster_attacks() -> np.ndarray:
    """``[NUMMONS, 6, 4]`` uint8 attack table (type, damage type, dice, sides) of every monster,
    read from the ``mons`` array of NLE's own NetHack library; raises ``RuntimeError`` if its layout
    does not match what ``nle.nethack.permonst`` reports."""
    import nle._pynethack as core

    lib = ctypes.CDLL(core.__file__)  # already loaded by nle: the same handle and data
    mons = (_Permonst * (nh.NUMMONS + 1)).in_dll(lib, "mons")
    out = np.zeros((nh.NUMMONS, NATTK, 4), np.uint8)
    for i in range(nh.NUMMONS):
        m, ref = mons[i], nh.permonst(i)
        if (
            m.mname is None
            or m.mname.decode() != ref.mname
            or any(getattr(m, f) != getattr(ref, f) for f in _CHECKED)
        ):
            raise RuntimeError(f"NLE's monster table has an unexpected layout (monster {i})")
        for k in range(NATTK):
            a = m.mattk[k]
            out[i, k] = (a.aatyp, a.adtyp, a.damn, a.damd)
    return out


def passive_monsters(attacks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(passive, deadly)`` ``[NUMMONS]`` bool: monsters that hurt whoever hits them (a passive
    attack ``AT_NONE`` with an effect, or ``AT_BOOM``), and those of them whose passive paralyses,
    stones or slimes (never attacked)."""
    at, ad = attacks[..., 0], attacks[..., 1]
    effect = attacks[..., 1:].any(-1)
    is_passive = ((at == AT_NONE) & effect) | (at == AT_BOOM)
    deadly = is_passive & np.isin(ad, (AD_PLYS, AD_STON, AD_SLIM))
    return is_passive.any(1), deadly.any(1)


_ALL = np.arange(F.N_GLYPHS)
#: Monster index of every monster glyph (normal, pet, detected, ridden), -1 for other glyphs.
MON_OF = np.full(F.N_GLYPHS, -1, dtype=np.int64)
MON_OF[F.IS_MONSTER] = np.asarray(nh.glyph_to_mon(_ALL[F.IS_MONSTER]), dtype=np.int64)
PASSIVE_MON, DEADLY_MON = passive_monsters(monster_attacks())

# teacher flags per glyph
T_TARGET = 1  # something to hit: a monster that is not a pet, an "I" marker, the engulfer
T_PASSIVE = 2  # a monster with a passive attack
T_DEADLY = 4  # ... that paralyses, stones or slimes
T_TRAPDOOR = 8  # a trap door or hole: a way down
T_MON = 16  # any monster (pets included)
_TRAPDOOR = _cmap_index(lambda e: e in ("trap door", "hole"))
TEACHER_FLAGS = np.zeros(F.N_GLYPHS, dtype=np.int64)
TEACHER_FLAGS[(F.IS_MONSTER & ~F.IS_PET) | F.IS_INVISIBLE | F.IS_SWALLOW] |= T_TARGET
TEACHER_FLAGS[F.IS_MONSTER] |= T_MON
_mon = MON_OF >= 0
TEACHER_FLAGS[_mon & PASSIVE_MON[np.maximum(MON_OF, 0)]] |= T_PASSIVE
TEACHER_FLAGS[_mon & DEADLY_MON[np.maximum(MON_OF, 0)]] |= T_DEADLY
TEACHER_FLAGS[F.IS_TRAP & np.isin(F.CMAP_OF, _TRAPDOOR)] |= T_TRAPDOOR


# ---------------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------------
#: Moves into a cell that leave the hero in place before the cell counts as blocked.
FAIL_LIMIT = 3
#: Searches next to a cell before it is given up (each finds a hidden door next to the hero
#: with probability about 1/7 at luck 0).
SEARCH_LIMIT = 12
#: Rounds of ``SEARCH_LIMIT`` searches each spot gets when the earlier rounds found nothing.
SEARCH_ROUNDS = 4
#: Cells behind a wall whose blank share scores a search next to it.
SEARCH_RAY = 15
#: Search score of each blank cell next to an opening (a dead end or doorway), and its bonus.
SEARCH_OPENING = 1.0
#: Least search score worth walking to, and its cost per step of the way there.
SEARCH_MIN, SEARCH_DIST = 0.5, 0.05
#: A nearer frontier replaces the committed one only when it is this many steps nearer.
GOAL_KEEP = 3
#: Steps without rush moves after the hero came back to the cell it left the step before.
CALM_STEPS = 8
#: Kicks per locked door before it is given up.
KICK_LIMIT = 8
#: Eat commands per episode.
EAT_LIMIT = 10
#: Shortest straight stretch taken with a rush move.
RUSH_MIN = 2
#: Rush even where the straight stretch does not end against a wall (the rush may overshoot).
RUSH_OVERSHOOT = True
#: Rush into corridors (NetHack's rush follows their bends); the cells it went through are
#: marked seen along the shortest walk from where it started.
RUSH_CORRIDOR = True
