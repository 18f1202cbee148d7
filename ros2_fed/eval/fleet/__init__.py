"""``fed_fleet_eval``: many rosbags through the offline replay, on a process pool or Ray, into one
exact report.

Why a package of its own: the replay (:mod:`ros2_fed.eval.replay`) evaluates one bag; a fleet
needs discovery, a task per bag run where the engine stays open, results that survive a crash
(one folder per finished bag), and a report whose POOLED row merges the bags' scorer states
instead of averaging their numbers. Modules:

- :mod:`.discovery`: paths, folders and list files -> one task per bag (per camera of a rig);
- :mod:`.state`: a :class:`~ros2_fed.eval.replay.scoring.Scorer` as an ``.npz`` (no pickle);
- :mod:`.task`: one task evaluated by ``fed_bag_eval --offline``'s own class, engine kept open;
- :mod:`.store`: the output folder (atomic per-bag folders, resume, settings check);
- :mod:`.local` / :mod:`.ray_pool`: the executors (worker processes, Ray actors), retries;
- :mod:`.pooling`, :mod:`.report`: the fleet report; :mod:`.cli`: the command.
"""
