"""Your own environments: ``module:EnvId`` names, constructor keyword arguments (``--env-kwargs``), and the
observation spaces rlkit's agents can read."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import BadEnvOutput, UserError

RESERVED_KWARGS = ("render_mode",)
"""Keyword arguments make_env sets itself (``render=True`` asks for ``rgb_array`` frames)."""

_REGISTERED_BY: dict[str, list[str]] = {}
"""Module -> the env ids its import registered (for 'did you mean' when the id after the colon is wrong)."""


def import_env_module(module: str, name: str) -> list[str]:
    """Import ``module`` so that it registers its envs (gymnasium's ``module:EnvId`` convention); returns the ids it
    registered on its first import.

    Raises:
        UserError: naming the module and the fix when it cannot be imported.
    """
    if module in _REGISTERED_BY:
        return _REGISTERED_BY[module]
    before = set(gym.registry)
    try:
        _import(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module == error.name or module.startswith(error.name + ".")):
            raise UserError(f"--env {name}: no module named {module!r} to import: run from the folder that holds "
                            f"{module.split('.')[0]}.py, add its folder to PYTHONPATH, or pip install its package"
                            ) from None
        raise UserError(f"--env {name}: importing {module!r} failed: it needs the module {error.name!r}: install it "
                        "(pip install ...)") from None
    except Exception as error:  # noqa: BLE001 - the user's module: one line naming it, not our traceback
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"--env {name}: importing {module!r} failed ({type(error).__name__}: {first[:200]}): fix "
                        f"the module (python -c 'import {module}' shows the traceback)") from None
    _REGISTERED_BY[module] = sorted(set(gym.registry) - before)
    return _REGISTERED_BY[module]


def _import(module: str) -> None:
    """Import ``module``, also from the current folder: the ``rlkit`` console script, unlike ``python train.py`` run
    there, does not put it on the path, and "my_envs.py beside me" is where a user's module usually is."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if error.name != module.split(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # after everything else: the folder never shadows an installed package
        importlib.import_module(module)


def registered_by(module: str) -> list[str]:
    """The env ids ``module`` registered when it was imported (empty if it was imported before rlkit asked)."""
    return _REGISTERED_BY.get(module, [])


# ---------------------------------------------------------------------------------------------- --env-kwargs
PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}


def parse_env_kwargs(pairs: Iterable[str], flag: str = "--env-kwargs") -> dict[str, Any]:
    """``["gravity=-5.0", "continuous=true", "name=moon"]`` -> ``{"gravity": -5.0, "continuous": True,
    "name": "moon"}``: each value is read as JSON, Python's ``True``, ``False`` and ``None`` as those (gymnasium's
    docs write ``is_slippery=False``: it was the string "False", which is true), and anything else as a plain string
    (a JSON string, ``'"True"'``, keeps a word that would be read otherwise).

    Raises:
        UserError: for an item without ``=``, an empty or repeated key (named as ``flag`` gave it).
    """
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            example = "--env-kwargs gravity=-5.0 continuous=true" if flag == "--env-kwargs" else f"{flag} key=value"
            raise UserError(f"{flag} {pair!r} is not KEY=VALUE: write e.g. {example}")
        if not key.isidentifier():
            raise UserError(f"{flag} {pair!r}: {key!r} is not a keyword argument name")
        if key in kwargs:
            raise UserError(f"{flag} gives {key} twice: give it once")
        if text.strip() in PYTHON_CONSTANTS:
            kwargs[key] = PYTHON_CONSTANTS[text.strip()]
            continue
        try:
            kwargs[key] = json.loads(text)
        except ValueError:
            kwargs[key] = text  # a bare word: --env-kwargs map_name=8x8
    return kwargs


def wrapper_entry(entry: Any) -> tuple[str, dict[str, Any]]:
    """The import name and keyword arguments of one ``--env-wrapper`` entry as a run saves it: a name
    (``"gymnasium.wrappers:FlattenObservation"``), or rl-zoo's ``{name: {keyword: value}}`` for a wrapper that takes
    arguments (``{"gymnasium.wrappers:TimeLimit": {"max_episode_steps": 100}}``).

    Raises:
        UserError: anything else, or arguments that are not JSON values (they are saved with the run).
    """
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((name, kwargs),) = entry.items()
        if isinstance(name, str) and (kwargs is None or isinstance(kwargs, Mapping)
                                      and all(isinstance(key, str) for key in kwargs)):
            return name, _json_values(dict(kwargs or {}), f"--env-wrapper {name}'s arguments")
    raise UserError(f"an env wrapper is an import name or {{name: {{keyword: value}}}} (rl-zoo's env_wrapper form), "
                    f"got {entry!r:.80}")


def _json_values(kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """``kwargs`` once they are known to be JSON values: they are saved in checkpoints and config.json."""
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UserError(f"{what} must be JSON values (numbers, strings, booleans, lists, dicts), since they are "
                        f"saved with the run ({error}); build anything else in a wrapper: make_env(..., "
                        "wrappers=[...])") from None
    return kwargs


def resolve_wrapper(entry: str | Mapping[str, Any]) -> WrapperByName:
    """The env wrapper (a ``gym.Wrapper`` class or a function ``env -> env``) that ``entry`` imports, with its
    arguments (:func:`wrapper_entry`): ``gymnasium.wrappers:FlattenObservation`` or
    ``gymnasium.wrappers.FlattenObservation``, as rl-zoo's ``env_wrapper`` names one. Importing runs that module, as
    ``--env module:EnvId`` does.

    Raises:
        UserError: a name that does not import or is not callable.
    """
    name, kwargs = wrapper_entry(entry)
    module_name, sep, attribute = name.partition(":")
    if not sep:
        module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        raise UserError(f"--env-wrapper {name!r} is not MODULE:NAME: write e.g. gymnasium.wrappers:FlattenObservation")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except ImportError as error:
        raise UserError(f"--env-wrapper {name}: cannot import {module_name} ({error}): install it, or put its "
                        "folder on PYTHONPATH") from None
    except AttributeError:
        raise UserError(f"--env-wrapper {name}: {module_name} has no {attribute}") from None
    # Only a gym.Wrapper class or a function written in Python: a checkpoint names these, and a builtin such as
    # sys.exit or os.system called with the env is no wrapper.
    if not ((isinstance(found, type) and issubclass(found, gym.Wrapper)) or isinstance(found, types.FunctionType)):
        raise UserError(f"--env-wrapper {name} is a {type(found).__name__}, not a gym.Wrapper class or a Python "
                        "function env -> env")
    return WrapperByName(name, found, kwargs)


class WrapperByName:
    """An ``--env-wrapper``: applies ``wrapper`` to an env with the run's ``kwargs``, and says in one line when its
    constructor wants other arguments (``TimeLimit`` wants ``max_episode_steps``) or refuses the values given.
    Picklable when the wrapper is (A3C's workers get it)."""

    def __init__(self, name: str, wrapper: Any, kwargs: Mapping[str, Any] | None = None):
        self.name, self.wrapper, self.kwargs = name, wrapper, dict(kwargs or {})

    def __call__(self, env: gym.Env) -> gym.Env:
        try:
            return self.wrapper(env, **self.kwargs)
        except (TypeError, ValueError, AssertionError) as error:
            own = getattr(self.wrapper, "__name__", "")
            if isinstance(error, TypeError) and str(error).startswith((f"{own}.__init__()", f"{own}()")):
                raise UserError(f"{self._given()} cannot wrap an env ({error}): {self._takes()}") from None
            if not self.kwargs:
                raise  # from inside the wrapper's own code, given only the env: its traceback is the useful part
            raise UserError(f"{self._given()} was refused ({type(error).__name__}: "
                            f"{str(error).strip()[:200]}): check the values") from None

    def _given(self) -> str:
        return " ".join(["--env-wrapper", self.name, *(f"{key}={json.dumps(value)}"
                                                       for key, value in self.kwargs.items())])

    def _takes(self) -> str:
        """Which keyword arguments the wrapper takes after the env, for the error's fix."""
        try:
            parameters = list(inspect.signature(self.wrapper).parameters.values())[1:]
        except (TypeError, ValueError):
            parameters = []
        names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not names:
            return "it takes no arguments after the env: drop them"
        return (f"it takes {', '.join(names)}: give them after its name, e.g. --env-wrapper {self.name} "
                f"{names[0]}=VALUE")


def check_env_kwargs(env_kwargs: Any) -> dict[str, Any]:
    """A copy of ``env_kwargs`` once it is known to be a dict of JSON values (they are saved in checkpoints and
    config.json, so evaluate.py can rebuild the same env) whose keys make_env does not set itself."""
    if env_kwargs is None:
        return {}
    if not isinstance(env_kwargs, Mapping) or not all(isinstance(key, str) for key in env_kwargs):
        raise UserError(f"env_kwargs must be a dict of keyword arguments, got {env_kwargs!r}")
    for key in RESERVED_KWARGS:
        if key in env_kwargs:
            raise UserError(f"--env-kwargs {key}=... is set by rlkit (rgb_array frames for videos, none otherwise): "
                            f"drop {key}")
    return _json_values(dict(env_kwargs), "env_kwargs")


def env_kwargs_error(env_id: str, env_kwargs: Mapping[str, Any], error: Exception) -> UserError:
    """The one-line error for an env whose constructor refused ``env_kwargs``, naming the keyword it refused."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    match = re.search(r"unexpected keyword argument '(\w+)'", text)
    if match is not None and match.group(1) in env_kwargs:
        key = match.group(1)
        accepted = _parameters(env_id)
        hint = f" (it takes {', '.join(accepted)})" if accepted else " (it takes none)" if accepted == [] else ""
        return UserError(f"--env-kwargs {key}={json.dumps(env_kwargs[key])}: {env_id} has no keyword argument "
                         f"{key!r}{hint}: drop or rename it")
    match = re.search(r"Invalid (?:game )?(mode|difficulty)", text)
    if match is not None and match.group(1) in env_kwargs:  # ALE: say which the game has
        key = match.group(1)
        valid = _ale_choices(env_id, key)
        return UserError(f"--env-kwargs {key}={json.dumps(env_kwargs[key])}: {env_id} has no such {key}"
                         + (f"; its {PLURALS[key]} are {', '.join(map(str, valid))}" if valid else ""))
    shown = " ".join(f"{key}={json.dumps(value)}" for key, value in env_kwargs.items())
    text = text.split(" was raised from the environment creator")[0]  # gymnasium repeats the kwargs after this
    return UserError(f"{env_id} refused --env-kwargs {shown} ({type(error).__name__}: {text[:200]}): check the "
                     "names and values")


PLURALS = {"mode": "modes", "difficulty": "difficulties"}


def _ale_choices(env_id: str, key: str) -> list[int]:
    """The game modes or difficulties an Atari game has (ale-py's own lists), or [] if it cannot tell."""
    try:
        env = gym.make(env_id)
    except Exception:  # noqa: BLE001 - only a hint for an error message
        return []
    ale = env.unwrapped.ale
    choices = ale.getAvailableModes() if key == "mode" else ale.getAvailableDifficulties()
    env.close()
    return [int(choice) for choice in choices]


def _parameters(env_id: str) -> list[str] | None:
    """The keyword arguments the env's constructor takes (None when it cannot tell, e.g. ``**kwargs``)."""
    import inspect

    try:
        creator = gym.spec(env_id).entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        parameters = inspect.signature(creator).parameters.values()
    except (gym.error.Error, TypeError, ValueError, ImportError, AttributeError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.name not in RESERVED_KWARGS and p.kind is not p.VAR_POSITIONAL]


# ---------------------------------------------------------------------------------------------- spaces
DISCRETE_SPACES = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def is_one_hot_space(space: gym.Space) -> bool:
    """Whether every part of ``space`` is discrete (toy text's ``Discrete``, Blackjack's ``Tuple`` of them): such
    observations have one faithful array form, the concatenated one-hot codes, which :func:`~rlkit.envs.make_env`
    gives the agents itself (as SB3 does). A space with a ``Box`` part is left to the user: flattening an image
    into a vector is a choice, not a given."""
    if isinstance(space, DISCRETE_SPACES):
        return True
    if isinstance(space, gym.spaces.Tuple):
        return all(is_one_hot_space(part) for part in space.spaces)
    if isinstance(space, gym.spaces.Dict):
        return all(is_one_hot_space(part) for part in space.spaces.values())
    return False


class OneHotBox(gym.spaces.Box):
    """The [0, 1] float32 Box of :func:`one_hot_observations`, which also tells how its codes are laid out:
    ``parts`` holds one ``(width, radix)`` pair per discrete value in gymnasium's flattened order, a one-hot block
    of ``width == radix`` entries (a ``Discrete`` space, a ``MultiDiscrete`` entry) or one 0/1 entry of radix 2 (a
    ``MultiBinary`` bit). A table-based agent numbers the states with it."""

    def __init__(self, parts: Sequence[tuple[int, int]]):
        self.parts = tuple((int(width), int(radix)) for width, radix in parts)
        super().__init__(0.0, 1.0, (sum(width for width, _ in self.parts),), np.float32)


def discrete_parts(space: gym.Space) -> list[tuple[int, int]]:
    """The ``(width, radix)`` parts (see :class:`OneHotBox`) of a wholly discrete space's flattened form."""
    if isinstance(space, gym.spaces.Discrete):
        return [(int(space.n), int(space.n))]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [(int(n), int(n)) for n in space.nvec.flatten()]
    if isinstance(space, gym.spaces.MultiBinary):
        return [(1, 2)] * int(np.prod(space.n))
    parts = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
    return [part for sub in parts for part in discrete_parts(sub)]


def one_hot_observations(env: gym.Env) -> gym.Env:
    """Wrap one env whose observations are wholly discrete (:func:`is_one_hot_space`) so they come as float32
    one-hot codes (gymnasium's ``FlattenObservation`` in the dtype the agents compute in: replay buffers then store
    4 bytes per entry, not int64's 8) in a :class:`OneHotBox`; any other env is returned as it is."""
    if not is_one_hot_space(env.observation_space):
        return env
    space = OneHotBox(discrete_parts(env.observation_space))
    env = gym.wrappers.FlattenObservation(env)
    assert env.observation_space.shape == space.shape  # the parts follow gymnasium's own flattening
    return gym.wrappers.TransformObservation(env, lambda obs: obs.astype(np.float32), space)


class ScalarRewards(gym.RewardWrapper):
    """A reward given as an array of one entry (``np.array([r])``, as some envs return it) becomes that number; an
    array of several (a vector of objectives) is refused by name: gymnasium's vector env failed on either with
    "setting an array element with a sequence"."""

    def reward(self, reward: Any) -> Any:
        if isinstance(reward, (int, float)):  # the usual case first: Python's and numpy's float64
            return reward
        array = np.asarray(reward)
        if array.size == 1:
            return array.reshape(()).item()
        env_id = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
        raise BadEnvOutput(f"{env_id} returned a reward of shape {array.shape}: a reward is one number per step; "
                           "sum or weigh the objectives into one in a wrapper (make_env(..., wrappers=[...]))")


def vector_scalars(env: gym.Env) -> gym.Env:
    """Wrap one env whose observations are scalars (a ``Box`` of shape ``()``) so they come as vectors of one entry,
    the least an agent's networks read (a batch of scalars has no feature axis); any other env is returned as it
    is."""
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and space.shape == ()):
        return env
    vector = gym.spaces.Box(space.low.reshape(1), space.high.reshape(1), dtype=space.dtype)
    return gym.wrappers.TransformObservation(env, lambda obs: np.asarray(obs, dtype=vector.dtype).reshape(1), vector)


def is_channels_last_image(space: gym.Space) -> bool:
    """Whether ``space`` holds uint8 images in height-width-channel order (gymnasium's convention: CarRacing's
    (96, 96, 3), a user's camera): the channel axis is last and strictly the smallest, as in SB3's check."""
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
        return False
    height, width, channels = space.shape
    return channels < height and channels < width


def channels_first_images(env: gym.Env) -> gym.Env:
    """Wrap one env whose observations are channels-last images (:func:`is_channels_last_image`) so they come as
    (C, H, W), the order the convolutional torsos take (SB3's ``VecTransposeImage``); any other env is returned as
    it is."""
    space = env.observation_space
    if not is_channels_last_image(space):
        return env
    transposed = gym.spaces.Box(np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)),
                                dtype=np.uint8)
    return gym.wrappers.TransformObservation(
        env, lambda obs: np.ascontiguousarray(np.transpose(obs, (2, 0, 1))), transposed)


def check_observation_space(space: gym.Space, env_id: str = "this env") -> None:
    """Refuse, in one line naming the wrapper to use, an observation space rlkit's agents cannot read: they take
    one array (a ``Box``); a ``Dict`` or ``Tuple`` with a ``Box`` part becomes one with ``FlattenObservation``
    (wholly discrete spaces never get here: :func:`~rlkit.envs.make_env` one-hot codes them).

    Raises:
        UserError: for anything but a ``Box``.
    """
    if isinstance(space, gym.spaces.Box):
        return
    kind = type(space).__name__
    try:
        flat = gym.spaces.flatten_space(space)
    except NotImplementedError:
        flat = None
    if isinstance(flat, gym.spaces.Box):
        raise UserError(f"{env_id} has {kind} observations but rlkit's agents take one array (a Box space): wrap it "
                        f"in gymnasium.wrappers.FlattenObservation (giving a Box of shape {flat.shape}): in Python "
                        "make_env(..., wrappers=[FlattenObservation]); on the command line --env-wrapper "
                        "gymnasium.wrappers:FlattenObservation")
    raise UserError(f"{env_id} has {kind} observations but rlkit's agents take one array (a Box space), and "
                    f"{kind} has no flat form: write a gymnasium.ObservationWrapper that maps it to a Box and pass "
                    "it in make_env(..., wrappers=[...])")


class ZeroBasedActions(gym.ActionWrapper):
    """Actions chosen as ``0 .. n-1`` (``Discrete``) or from 0 in every entry (``MultiDiscrete``) reach an env whose
    actions start elsewhere (``Discrete(3, start=-1)``: left, stay, right) as ``start + choice``: every policy head and
    Q head counts from 0. ``env.action_space`` beneath stays the env's own."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self.start = space.start
        self.action_space = (gym.spaces.Discrete(int(space.n)) if isinstance(space, gym.spaces.Discrete) else
                             gym.spaces.MultiDiscrete(space.nvec, dtype=space.dtype))

    def action(self, action: Any) -> Any:
        if isinstance(self.env.action_space, gym.spaces.Discrete):
            return int(self.start) + int(action)
        return (self.start + np.asarray(action)).astype(self.env.action_space.dtype)


def starts_elsewhere(space: gym.Space) -> bool:
    """Whether ``space`` holds ``Discrete`` or ``MultiDiscrete`` actions that do not start at 0."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start) != 0
    return isinstance(space, gym.spaces.MultiDiscrete) and bool(space.start.any())


def zero_based_actions(env: gym.Env) -> gym.Env:
    """``env`` in :class:`ZeroBasedActions` when its actions start elsewhere than 0; any other env as it is."""
    return ZeroBasedActions(env) if starts_elsewhere(env.action_space) else env


class FlatBoxActions(gym.ActionWrapper):
    """``Box`` actions of any other shape than a vector's (a (2, 2) matrix of torques, a scalar) chosen as the
    vector of their entries, as every Gaussian and squashed policy head and every critic input is, and reshaped for
    the env (SB3 flattens them too). ``env.action_space`` beneath stays the env's own."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self.action_space = gym.spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype)

    def action(self, action: Any) -> np.ndarray:
        return np.asarray(action, dtype=self.env.action_space.dtype).reshape(self.env.action_space.shape)


def flat_box_actions(env: gym.Env) -> gym.Env:
    """``env`` in :class:`FlatBoxActions` when its ``Box`` actions are not a vector; any other env as it is."""
    space = env.action_space
    return FlatBoxActions(env) if isinstance(space, gym.spaces.Box) and len(space.shape) != 1 else env


OWN_ACTION_WRAPPERS = (ZeroBasedActions, FlatBoxActions)
"""The wrappers make_env puts between an env's own actions and the agent's (:func:`rlkit.api` sees through them)."""
