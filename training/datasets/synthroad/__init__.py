"""synthroad: procedural Cityscapes-like road scenes with exact labels and a held-out OOD split.

Why: the project needs a dataset it can generate anywhere (tests, the shipped default model,
drive-like rosbags) with the structure of Cityscapes -- road, sidewalk, facades, vegetation,
terrain, sky, cars, trucks, persons, poles, signs, traffic lights, a void ego-vehicle hood --
hard enough that a small CNN has to learn it, and an OOD split whose objects never occur in
training, labelled the Fishyscapes way.

Rendering is a pin-hole camera over a flat ground plane (horizon, vanishing point, focal
length, camera height are drawn per scene): ground, facades and lane marks are computed per
pixel with numpy from their world coordinates (so textures are anchored in the world and a
moving camera sees a coherent scene), objects are 3D boxes / articulated shapes projected and
painted far-to-near with OpenCV. A label map of Cityscapes **labelIds** is painted alongside;
trainIds come from it through the official table, so the labelIds -> trainIds path of the
Cityscapes loader is exercised by real data.

OOD objects (split ``ood`` only): lost cargo boxes with checker/stripe/dot textures, animals,
tyres, traffic cones, barrels, bags and irregular debris in saturated colours, lying on the
road. None of these shapes, textures or colours is drawn in train/val. In the label maps they
are void (labelId 0 -> trainId 255); their mask is written separately (0 in-distribution, 1 OOD,
255 void = the ego hood and the unlabelled clutter).

On-disk layout written by ``write_dataset`` / ``fed_synthroad`` (``{id}`` =
``synthroad_{SSSSSS}_{FFFFFF}`` with S = 0 train, 1 val, 2 ood and F the frame index)::

    {out}/leftImg8bit/{split}/synthroad/{id}_leftImg8bit.png
    {out}/gtFine/{split}/synthroad/{id}_gtFine_labelIds.png        Cityscapes labelIds
    {out}/gtFine/{split}/synthroad/{id}_gtFine_labelTrainIds.png   trainIds, 255 = void (incl. OOD)
    {out}/gtFine/{split}/synthroad/{id}_gtFine_oodIds.png          0 / 1 / 255 (every split)
    {out}/fishyscapes_ood/original/{id}.png                        ood split again, in the
    {out}/fishyscapes_ood/labels/{id}.png                          Fishyscapes layout (0 / 1 / 255)
    {out}/synthroad.json                                           generator settings and counts

Modules: :mod:`.scene` draws the street, camera and objects (no pixels), :mod:`.render` turns
a scene into frames (single images and drives), :mod:`.io` writes and reads the layout above,
:mod:`.void` adds unlabelled void clutter to chosen splits (``fed_synthroad --void-clutter``;
docs/synthroad_void.md), drawn by :mod:`.void_ground` and :mod:`.void_things` on the
:mod:`.canvas` every object shares.
Each image is rendered from ``np.random.default_rng([seed, split code, index])``, so it depends
only on (seed, split, index): more images never change the first ones.
"""

from .io import (
    CITY,
    FISHYSCAPES_DIR,
    OOD_SUFFIX,
    SPLITS,
    VERSION,
    SynthRoadDataset,
    image_id,
    render_indexed,
    sample_indexed,
    write_dataset,
    write_frame,
)
from .render import Frame, render_frame, render_scene, render_scene_full, render_sequence
from .scene import (
    BUILDING,
    CAR,
    FENCE,
    LIGHT,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRAIN_IDS_USED,
    TRUCK,
    VEGETATION,
    WALL,
    Camera,
    Obj,
    Scene,
    sample_scene,
)
from .void import VOID_FAMILIES, VoidClutter, add_void_clutter

__all__ = [
    "BUILDING",
    "CAR",
    "CITY",
    "FENCE",
    "FISHYSCAPES_DIR",
    "LIGHT",
    "OOD_SUFFIX",
    "PERSON",
    "POLE",
    "ROAD",
    "SIDEWALK",
    "SIGN",
    "SKY",
    "SPLITS",
    "TERRAIN",
    "TRAIN_IDS_USED",
    "TRUCK",
    "VOID_FAMILIES",
    "VEGETATION",
    "VERSION",
    "VoidClutter",
    "WALL",
    "add_void_clutter",
    "Camera",
    "Frame",
    "Obj",
    "Scene",
    "SynthRoadDataset",
    "image_id",
    "render_frame",
    "render_indexed",
    "render_scene",
    "render_scene_full",
    "render_sequence",
    "sample_indexed",
    "sample_scene",
    "write_dataset",
    "write_frame",
]
