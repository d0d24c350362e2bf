"""The routing curriculum as data: phases by completed episodes, with temperature schedules."""

from __future__ import annotations

from dataclasses import dataclass, field

from nethack_moe.config.loss_terms import COEFFICIENT_NAMES
from nethack_moe.models.routing import ROUTING_KINDS


@dataclass
class Phase:
    """One curriculum phase; it lasts until the next phase's ``start_episode``."""

    name: str
    """Label written into every metric record of the phase."""
    start_episode: int
    """Completed-episode count at which the phase begins."""
    routing: str = "softmax"
    """Router normalizer: softmax, sparsemax or entmax15."""
    temperature: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Router temperature [start, end], linear in completed episodes over the phase."""
    lr: float = 1e-4
    """Learning rate in force during the phase (nothing else overrides it)."""
    coefficients: dict[str, float] = field(default_factory=dict)
    """Loss coefficients: entropy, alpha_entropy, load_balance, diversity, routing_prior."""
    teacher: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Kickstarting coefficient λ of the teacher term [start, end], linear in completed episodes
    over the phase (``ppo/loss.py``; needs ``env.teacher``). [0, 0]: no teacher term."""

    def coef(self, name: str) -> float:
        return float(self.coefficients.get(name, 0.0))


@dataclass
class CurriculumConfig:
    """Phases in order of ``start_episode``; training ends at ``total_episodes``."""

    phases: list[Phase] = field(
        default_factory=lambda: [
            Phase("warmup", 0, "softmax", [1.0, 1.0], 1e-4, {"entropy": 0.05}),
        ]
    )
    """The phases; the first must start at episode 0 (or at the resumed run's episode)."""
    total_episodes: int = 5000
    """Completed episodes (over all envs) after which training stops."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad phase field."""
        if not self.phases:
            raise ValueError("curriculum.phases must list at least one phase")
        if self.total_episodes <= 0:
            raise ValueError(f"curriculum.total_episodes={self.total_episodes} must be positive")
        prev = -1
        names = set()
        for k, p in enumerate(self.phases):
            where = f"curriculum.phases[{k}] ({p.name!r})"
            if p.name in names:
                raise ValueError(f"{where}: duplicate phase name")
            names.add(p.name)
            if p.start_episode <= prev:
                raise ValueError(f"{where}: start_episode={p.start_episode} must increase")
            prev = p.start_episode
            if p.routing not in ROUTING_KINDS:
                raise ValueError(
                    f"{where}: routing={p.routing!r}; allowed: {', '.join(ROUTING_KINDS)}"
                )
            if len(p.temperature) != 2 or min(p.temperature) <= 0:
                raise ValueError(
                    f"{where}: temperature={p.temperature} must be [start, end], both > 0"
                )
            if not p.lr > 0:
                raise ValueError(f"{where}: lr={p.lr} must be > 0")
            if len(p.teacher) != 2 or min(p.teacher) < 0:
                raise ValueError(f"{where}: teacher={p.teacher} must be [start, end], both >= 0")
            for c, v in p.coefficients.items():
                if c not in COEFFICIENT_NAMES:
                    raise ValueError(
                        f"{where}: unknown coefficient {c!r}; allowed: {', '.join(COEFFICIENT_NAMES)}"
                    )
                if not isinstance(v, (int, float)):
                    raise ValueError(f"{where}: coefficient {c}={v!r} must be a number")
        if self.phases[-1].start_episode >= self.total_episodes:
            raise ValueError(
                f"curriculum: last phase starts at {self.phases[-1].start_episode} >= "
                f"total_episodes={self.total_episodes}"
            )

    def phase_index(self, episode: int) -> int:
        """Index of the phase in force after ``episode`` completed episodes."""
        k = 0
        for i, p in enumerate(self.phases):
            if episode >= p.start_episode:
                k = i
        return k

    def phase_at(self, episode: int) -> Phase:
        return self.phases[self.phase_index(episode)]

    def phase_end(self, k: int) -> int:
        return self.phases[k + 1].start_episode if k + 1 < len(self.phases) else self.total_episodes

    def _linear(self, episode: int, which: str) -> float:
        """A phase's ``[start, end]`` schedule at ``episode``: linear over the phase's episodes."""
        k = self.phase_index(episode)
        p = self.phases[k]
        v0, v1 = getattr(p, which)
        span = max(self.phase_end(k) - p.start_episode, 1)
        frac = min(max((episode - p.start_episode) / span, 0.0), 1.0)
        return float(v0 + (v1 - v0) * frac)

    def temperature_at(self, episode: int) -> float:
        """Router temperature: linear from start to end over the phase's episodes."""
        return self._linear(episode, "temperature")

    def teacher_at(self, episode: int) -> float:
        """Kickstarting coefficient λ: linear from start to end over the phase's episodes."""
        return self._linear(episode, "teacher")

    @property
    def uses_teacher(self) -> bool:
        """Whether any phase has a teacher term."""
        return any(max(p.teacher) > 0 for p in self.phases)

    def lr_at(self, episode: int) -> float:
        return float(self.phase_at(episode).lr)
