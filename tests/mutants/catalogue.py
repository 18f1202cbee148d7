"""Known wrong versions of the code, each with the tests that must fail on it.

Every mutant here once passed the whole suite (an audit made these small mutations by hand);
tests/test_mutants.py applies each one to a copy of the checkout and runs the named tests
against the copy, which must fail. So a test weakened later, or code moved so that a test no
longer reaches it, shows up as a surviving mutant; code that moved so that the original snippet
is gone fails loudly too ("no longer applies": update the snippet with the code).

The TensorRT mutants are kept next to their fakes in tests/test_tensorrt_logic.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Replace ``before`` (exactly one occurrence; a regular expression when ``regex``) by
    ``after``."""

    before: str
    after: str
    regex: bool = False


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # the mutated file, relative to the repository root
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # node ids (a parametrized test: every case) that must fail
    why: str
    slow: bool = False  # the killing tests start ROS processes or build engines


POOLING = "ros2_fed/eval/fleet/pooling.py"
FLEET = "tests/test_fleet.py"
SCENE_TESTS = "tests/test_scene.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "fleet: POOLED IDM as the mean of per-bag means",
        POOLING,
        (
            Edit(
                "total = math.fsum(row[key] for row in averager.per_image)\n",
                "total = math.fsum(row[key] for row in averager.per_image)"
                " / len(averager.per_image)\n",
            ),
            Edit(
                "        self.n_skipped += averager.n_skipped\n",
                "        self.n_skipped += averager.n_skipped\n"
                '        self.n_bags = getattr(self, "n_bags", 0) + 1\n',
            ),
            Edit(
                "return self.sums[key] / self.n_images if self.n_images else math.nan",
                "return self.sums[key] / self.n_bags if self.n_images else math.nan",
            ),
        ),
        (
            f"{FLEET}::test_pool_of_unequal_bags_equals_scikit_learn_on_all_frames",
            f"{FLEET}::test_pool_crossing_the_exact_limit_between_bags_keeps_every_bag",
        ),
        "a fleet's IDM is the mean over its frames; equal bags hide the difference",
    ),
    Mutant(
        "fleet: scene share not weighted by frames",
        POOLING,
        (
            Edit("        total += frames\n", "        total += 1\n"),
            Edit(
                "weighted.get(level, 0.0) + float(value) * frames",
                "weighted.get(level, 0.0) + float(value)",
            ),
        ),
        (f"{FLEET}::test_pooled_scene_share_weights_each_bag_by_its_frames",),
        "the fleet's share of frames per level",
    ),
    Mutant(
        "fleet: the exact-to-histogram switch drops the earlier bags",
        POOLING,
        (Edit("                pooled.merge(self.scorer)\n", ""),),
        (f"{FLEET}::test_pool_crossing_the_exact_limit_between_bags_keeps_every_bag",),
        "crossing the exact limit bins the bags so far, it does not forget them",
    ),
    Mutant(
        "scene: WARN headroom 1.5",
        "ros2_fed/scene.py",
        (Edit("WARN_HEADROOM = 2.0\n", "WARN_HEADROOM = 1.5\n"),),
        (
            f"{SCENE_TESTS}::test_limits_come_from_the_in_domain_distribution",
            f"{SCENE_TESTS}::test_the_shipped_default_models_scene_limits",
        ),
        "3.25 % of clean frames WARN by docs/scene.md's own table",
    ),
    Mutant(
        "scene: a share at the limit counts as over it",
        "ros2_fed/scene.py",
        (
            Edit(
                "c.above[k] + 1 if fraction > cfg.limit(k) else 0",
                "c.above[k] + 1 if fraction >= cfg.limit(k) else 0",
            ),
        ),
        (
            f"{SCENE_TESTS}::test_a_share_exactly_at_the_shipped_limit_is_not_over_it",
            f"{SCENE_TESTS}::test_a_frame_exactly_at_the_limit_through_the_frame_path",
        ),
        "the rule is 'above the limit'",
    ),
    Mutant(
        "scene: the candidate level at the limit",
        "ros2_fed/scene.py",
        (
            Edit(
                "(k for k in (Level.ERROR, Level.WARN) if fraction > cfg.limit(k)), Level.OK",
                "(k for k in (Level.ERROR, Level.WARN) if fraction >= cfg.limit(k)), Level.OK",
            ),
        ),
        (f"{SCENE_TESTS}::test_a_frame_exactly_at_the_limit_through_the_frame_path",),
        "the status' candidate key-value follows the same rule",
    ),
    Mutant(
        "int8: calibrated on a single image",
        "ros2_fed/engine/int8.py",
        (
            Edit(
                "    for path in calibration.images:\n",
                "    for path in calibration.images[:1]:\n",
            ),
        ),
        ("tests/test_int8.py::test_the_quantiser_reads_every_calibration_image",),
        "the sidecar still records every image; only the calibrator's reads tell",
    ),
    Mutant(
        "README commands: flags matched as substrings",
        "tests/test_readme_commands.py",
        (
            Edit(
                "return [flag for flag in flags if flag not in known]",
                "return [flag for flag in flags if flag not in help_text]",
            ),
        ),
        ("tests/test_readme_commands.py::test_flags_are_matched_as_whole_tokens",),
        "--fed is found in --fed-extra-rates",
    ),
    Mutant(
        "README: a detection figure not from the results",
        "README.md",
        (Edit(r"OOD AP \*\*[0-9]+\.[0-9]+\*\*", "OOD AP **99.99**", regex=True),),
        (
            "tests/test_docs_figures.py::test_ood_ap_and_fpr95_against_the_best_single_pass_baseline",
        ),
        "a figure typed by hand or left behind by a re-run",
    ),
    Mutant(
        "README: an alert recall range not from the results",
        "README.md",
        (Edit(r"recall target \([0-9.]+-", "recall target (0.01-", regex=True),),
        ("tests/test_docs_figures.py::test_alert_recall_range_over_the_drive_sets",),
        "the range over the drive sets' JSON",
    ),
    Mutant(
        "README: a scene figure not from the results",
        "README.md",
        (Edit(r"Spearman \*\*-?[0-9.]+\*\*", "Spearman **-0.99**", regex=True),),
        ("tests/test_docs_figures.py::test_readme_scene_paragraph",),
        "docs/scene_results.json's correlation",
    ),
    Mutant(
        "docs/scene.md: a limit not from the results",
        "docs/scene.md",
        (Edit(r"\*\*WARN above [0-9.]+ %\*\*", "**WARN above 12.3 %**", regex=True),),
        ("tests/test_docs_figures.py::test_scene_page_in_domain_distribution_and_limits",),
        "the limits the results were measured with",
    ),
    Mutant(
        "footprint: the memory pattern back on (484 MiB)",
        "ros2_fed/engine/onnx_engine.py",
        (
            Edit(
                "options.enable_mem_pattern = bool(memory_pattern)",
                "options.enable_mem_pattern = True",
            ),
        ),
        (
            "tests/test_footprint.py::test_memory_pattern_is_off_by_default_and_can_be_turned_on",
            "tests/test_footprint.py::test_default_session_holds_far_less_memory_at_camera_size",
        ),
        "fed_node held 484 MiB at 512x1024 with it, 345 MiB without",
    ),
    Mutant(
        "footprint: the node's engine opened with the memory pattern",
        "ros2_fed/engine/onnx_engine.py",
        (
            Edit(
                "            inter_op_threads,\n            allow_spinning,\n        )\n",
                "            inter_op_threads,\n            allow_spinning,\n"
                "            memory_pattern=True,\n        )\n",
            ),
        ),
        ("tests/test_footprint.py::test_footprint_benchmark_measures_the_node_both_ways",),
        "session_options' default stays off, so only a real fed_node's RSS tells",
        slow=True,
    ),
    Mutant(
        "lifecycle: deactivate keeps the camera subscription",
        "ros2_fed/node_wiring.py",
        (Edit("            self.destroy_subscription(sub)\n", "            pass\n"),),
        ("tests/test_lifecycle_node.py::test_transitions_under_a_running_camera",),
        "nothing is published while inactive, but re-activating leaves two subscriptions",
        slow=True,
    ),
)
