"""Record readers for every layout, duplicates and grouped splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from skinscan.core.errors import DataError
from skinscan.training.duplicates import Duplicates, dedupe, drop_same_images, find_manifests, split_records
from skinscan.training.records import (
    DIAGNOSES,
    Record,
    SkippedRecords,
    diagnosis_of,
    list_splits,
    load_records,
    source_of,
)
from synthetic import lesion_bytes


def _touch_image(path: Path, malignant: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lesion_bytes(malignant, fmt="JPEG"))
    return path


@pytest.fixture
def ham_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ham"
    rows = [
        ("HAM_1", "ISIC_0000001", "mel"), ("HAM_1", "ISIC_0000002", "mel"),
        ("HAM_2", "ISIC_0000003", "nv"), ("HAM_3", "ISIC_0000004", "bkl"), ("HAM_4", "ISIC_0000005", "akiec"),
    ]  # fmt: skip
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    for lesion, image, dx in rows:
        lines.append(f"{lesion},{image},{dx},histo,50,male,back,vidir")
        # the full download spreads images over two folders
        folder = "HAM10000_images_part_1" if image < "ISIC_0000003" else "HAM10000_images_part_2"
        _touch_image(root / folder / f"{image}.jpg")
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    truth = ["image,MEL,NV,BCC,AKIEC,BKL,DF,VASC", "ISIC_0000010,0,1,0,0,0,0,0", "ISIC_0000011,0,0,1,0,0,0,0"]
    (root / "ISIC2018_Task3_Test_GroundTruth.csv").write_text("\n".join(truth) + "\n")
    for image in ("ISIC_0000010", "ISIC_0000011"):
        _touch_image(root / "test_images" / f"{image}.jpg")
    return root


def test_ham_layout_splits_and_binary_mapping(ham_dir: Path) -> None:
    train = load_records(ham_dir, "train")
    assert [r.label for r in train] == [1, 1, 0, 0, 1]  # mel, mel, nv, bkl, akiec
    assert train[0].group == train[1].group == "lesion:HAM_1"
    assert train[0].key == "ham10000:ISIC_0000001" and train[0].meta["localization"] == "back"
    test = load_records(ham_dir, "test")
    assert [(r.key, r.label) for r in test] == [("ham10000:ISIC_0000010", 0), ("ham10000:ISIC_0000011", 1)]
    assert len(load_records(ham_dir)) == 7
    assert list_splits(ham_dir) == ["test", "train"]
    with pytest.raises(DataError, match="no split 'val'"):
        load_records(ham_dir, "val")


def test_ham_csv_file_directly(ham_dir: Path) -> None:
    assert len(load_records(ham_dir / "HAM10000_metadata.csv")) == 5
    assert len(load_records(ham_dir / "ISIC2018_Task3_Test_GroundTruth.csv")) == 2


def test_class_folders_with_and_without_splits(synthetic_data: Path) -> None:
    records = load_records(synthetic_data, "test")
    assert len(records) == 24 and {r.split for r in records} == {"test"}
    assert sum(r.label for r in records) == 12
    assert records[0].key.startswith(f"{synthetic_data.name}:test/")
    assert len(load_records(synthetic_data)) == 2 * (40 + 12) * 1
    flat = load_records(synthetic_data / "train")
    assert len(flat) == 80


def test_generic_csv(tmp_path: Path) -> None:
    _touch_image(tmp_path / "imgs" / "a.jpg")
    _touch_image(tmp_path / "imgs" / "b.jpg", malignant=True)
    (tmp_path / "labels.csv").write_text("file,label\nimgs/a.jpg,benign\nimgs/b.jpg,1\n")
    records = load_records(tmp_path / "labels.csv")
    assert [r.label for r in records] == [0, 1]
    assert records[1].path == (tmp_path / "imgs" / "b.jpg").resolve()


def test_generic_csv_keeps_the_diagnosis(tmp_path: Path) -> None:
    _touch_image(tmp_path / "imgs" / "a.jpg")
    _touch_image(tmp_path / "imgs" / "b.jpg", malignant=True)
    (tmp_path / "labels.csv").write_text("path,label,diagnosis\nimgs/a.jpg,benign,BKL\nimgs/b.jpg,malignant,\n")
    records = load_records(tmp_path / "labels.csv")
    assert [r.meta.get("dx") for r in records] == ["bkl", None]  # lower-cased; an empty cell is no diagnosis


def _labels_folder(root: Path, header: str, rows: list[str], name: str = "labels.csv") -> Path:
    """A collection as isic2017/ and isic2020/ ship: images/ and one labels CSV whose first column is the path."""
    for row in rows:
        rel, label = row.split(",")[:2]
        _touch_image(root / rel, malignant=label == "malignant")
    (root / name).write_text("\n".join([header, *rows]) + "\n")
    return root


@pytest.fixture
def isic2017_dir(tmp_path: Path) -> Path:
    return _labels_folder(
        tmp_path / "isic2017",
        "path,label,split,dx,lesion_id,source,same_image_as",
        [
            "images/ISIC_0000000.jpg,benign,train,nv,,isic2017,isic2017:images/ISIC_0000003.jpg",
            "images/ISIC_0000001.jpg,malignant,train,mel,MSK4_1,isic2018_task1,",
            "images/ISIC_0000002.jpg,benign,val,bkl,MSK4_1,isic2017,",
            "images/ISIC_0000003.jpg,benign,test,nv,,isic2017,isic2017:images/ISIC_0000000.jpg",
        ],
    )


@pytest.fixture
def isic2020_dir(tmp_path: Path) -> Path:
    dx = ("melanoma", "nevus", "seborrheic keratosis", "lentigo NOS", "unknown")
    rows = [
        f"images/ISIC_{i:07d}.jpg,{'malignant' if i % 5 == 0 else 'benign'},{'test' if i >= 16 else 'train'},"
        f"IP_{i // 4},{dx[i % 5]},{('vatssavvya', 'toregore')[i % 2]},"
        for i in range(20)
    ]  # 5 patients of 4 images each
    return _labels_folder(tmp_path / "isic2020", "path,label,split,patient_id,dx,source,same_image_as", rows)


def _as_tuples(records: list[Record]) -> list[tuple[object, ...]]:
    return [(r.path, r.label, r.key, r.group, r.split, r.meta) for r in records]


def test_folder_with_labels_csv_reads_as_the_csv(isic2017_dir: Path) -> None:
    records = load_records(isic2017_dir)
    assert _as_tuples(records) == _as_tuples(load_records(isic2017_dir / "labels.csv"))
    assert [r.key for r in records][:2] == ["isic2017:images/ISIC_0000000.jpg", "isic2017:images/ISIC_0000001.jpg"]
    assert [r.split for r in records] == ["train", "train", "val", "test"]
    assert list_splits(isic2017_dir) == list_splits(isic2017_dir / "labels.csv") == ["test", "train", "val"]
    val = load_records(isic2017_dir, "val")
    assert [(r.key, r.split) for r in val] == [("isic2017:images/ISIC_0000002.jpg", "val")]


def test_folder_with_one_csv_of_another_name(tmp_path: Path) -> None:
    root = _labels_folder(tmp_path / "clinic", "file,label", ["a.jpg,benign", "b.jpg,malignant"], name="cases.csv")
    (root / "notes.csv").write_text("patient,comment\n1,fine\n")  # not a labels CSV: no image or label column
    assert [(r.key, r.label) for r in load_records(root)] == [("clinic:a.jpg", 0), ("clinic:b.jpg", 1)]
    assert list_splits(root) == []


def test_folder_with_two_labels_csvs_asks_which(tmp_path: Path) -> None:
    root = _labels_folder(tmp_path / "clinic", "file,label", ["a.jpg,benign"], name="cases.csv")
    (root / "more.csv").write_text("path,label\na.jpg,malignant\n")
    with pytest.raises(DataError, match=r"several labels CSVs \(cases.csv, more.csv\)"):
        load_records(root)


def test_groups_are_the_lesion_else_the_patient_else_the_image(isic2017_dir: Path, isic2020_dir: Path) -> None:
    first, *_, last = keys = [r.key for r in load_records(isic2017_dir)]
    assert [r.group for r in load_records(isic2017_dir)] == [first, "lesion:MSK4_1", "lesion:MSK4_1", last]
    assert len(keys) == 4
    assert {r.group for r in load_records(isic2020_dir)} == {f"patient:IP_{i}" for i in range(5)}
    (isic2020_dir / "both.csv").write_text("path,label,lesion_id,patient_id\nimages/ISIC_0000001.jpg,benign,L7,IP_0\n")
    assert load_records(isic2020_dir / "both.csv")[0].group == "lesion:L7"  # a lesion is narrower than a patient


def test_split_keeps_each_patient_on_one_side(isic2020_dir: Path) -> None:
    records = load_records(isic2020_dir)
    for seed in range(5):
        train, val = split_records(records, 0.3, seed)
        assert train and val and {r.group for r in train}.isdisjoint({r.group for r in val})


@pytest.mark.parametrize(
    ("written", "dx"),
    [("melanoma", "mel"), ("nevus", "nv"), ("seborrheic keratosis", "bkl"), ("lentigo NOS", "bkl"),
     ("unknown", None), ("MEL", "mel"), (" akiec ", "akiec"), ("cafe-au-lait macule", "cafe-au-lait macule")],
)  # fmt: skip
def test_diagnosis_words_become_codes(tmp_path: Path, written: str, dx: str | None) -> None:
    _touch_image(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text(f"path,label,dx\na.jpg,benign,{written}\n")
    (record,) = load_records(tmp_path)
    assert record.meta.get("dx") == dx  # words naming none of the 7 codes are kept, so a report can still show them
    assert diagnosis_of(record) == (DIAGNOSES.index(dx) if dx in DIAGNOSES else -1)


def test_meta_keeps_subsource_and_patient(isic2017_dir: Path, isic2020_dir: Path) -> None:
    first, second = load_records(isic2020_dir)[:2]
    assert first.meta == {"dx": "mel", "subsource": "vatssavvya", "patient_id": "IP_0"}
    assert second.meta == {"dx": "nv", "subsource": "toregore", "patient_id": "IP_0"}
    assert [r.meta for r in load_records(isic2017_dir)][:2] == [
        {"dx": "nv", "subsource": "isic2017"},
        {"dx": "mel", "subsource": "isic2018_task1"},
    ]


def test_unknown_split_names_the_splits(isic2017_dir: Path) -> None:
    for path in (isic2017_dir, isic2017_dir / "labels.csv"):
        with pytest.raises(DataError, match="no split 'banana'; it has: test, train, val"):
            load_records(path, "banana")


def test_split_of_a_csv_without_split_column(tmp_path: Path) -> None:
    _touch_image(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text("path,label\na.jpg,benign\n")
    with pytest.raises(DataError, match="no split column, so no split 'train'"):
        load_records(tmp_path / "labels.csv", "train")
    assert len(load_records(tmp_path / "labels.csv", None)) == len(load_records(tmp_path, "")) == 1


def test_official_file_is_one_split(ham_dir: Path) -> None:
    assert len(load_records(ham_dir / "HAM10000_metadata.csv", "train")) == 5
    with pytest.raises(DataError, match="no split 'test'; it has: train"):
        load_records(ham_dir / "HAM10000_metadata.csv", "test")
    with pytest.raises(DataError, match="no split 'train'; it has: test"):
        load_records(ham_dir / "ISIC2018_Task3_Test_GroundTruth.csv", "train")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,label\nmissing.jpg,benign\n", "does not exist"),
        ("path,label\nimgs/a.jpg,maybe\n", "unknown label"),
        ("name,kind\nx,y\n", "image column"),
    ],
)
def test_bad_csv_rows_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    _touch_image(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_records(tmp_path / "bad.csv")


def test_skip_bad_warns_and_keeps_the_rest(tmp_path: Path) -> None:
    _touch_image(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "mixed.csv").write_text("path,label\nimgs/a.jpg,benign\nimgs/gone.jpg,malignant\n")
    with pytest.warns(SkippedRecords, match="gone.jpg"):
        records = load_records(tmp_path / "mixed.csv", skip_bad=True)
    assert len(records) == 1


def test_unknown_layout_explains_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "random").mkdir()
    with pytest.raises(DataError, match="benign/ and malignant/"):
        load_records(tmp_path / "random")
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nowhere")


def _rec(key: str, label: int, group: str | None = None) -> Record:
    return Record(Path(key), label, key, group or key)


def test_duplicates_drop_and_dedupe(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    root.mkdir()
    (root / "manifest.csv").write_text(
        "path,label,split,sha256,same_image_as\n"
        "train/benign/1.jpg,benign,train,x,ham10000:ISIC_1\n"
        "test/benign/2.jpg,benign,test,y,ham10000:ISIC_2;kaggle:train/benign/3.jpg\n"
    )
    dup = Duplicates.from_files(find_manifests([root]))
    assert len(dup) == 3
    train = [_rec("ham10000:ISIC_1", 0), _rec("ham10000:ISIC_2", 0), _rec("kaggle:train/benign/1.jpg", 0),
             _rec("kaggle:train/benign/3.jpg", 0), _rec("ham10000:ISIC_9", 1)]  # fmt: skip
    test = [_rec("kaggle:test/benign/2.jpg", 0)]
    clean = drop_same_images(train, test, dup)
    assert [r.key for r in clean] == ["ham10000:ISIC_1", "kaggle:train/benign/1.jpg", "ham10000:ISIC_9"]
    assert [r.key for r in dedupe(clean, dup)] == ["ham10000:ISIC_1", "ham10000:ISIC_9"]


def test_dedupe_keeps_reshots_of_one_lesion_and_drops_copies_elsewhere() -> None:
    dup = Duplicates()
    dup.add("ham10000:ISIC_1", "ham10000:ISIC_2")  # two photos of one lesion, listed as the same photograph
    dup.add("ham10000:ISIC_2", "kaggle:a.jpg")  # and a Kaggle copy of one of them
    records = [
        _rec("ham10000:ISIC_1", 1, "lesion:L1"),
        _rec("ham10000:ISIC_2", 1, "lesion:L1"),
        _rec("kaggle:a.jpg", 1),
    ]
    assert [r.key for r in dedupe(records, dup)] == ["ham10000:ISIC_1", "ham10000:ISIC_2"]


def test_dedupe_drops_copies_within_a_patient() -> None:
    dup = Duplicates()
    dup.add("isic2020:images/a.jpg", "isic2020:images/b.jpg")  # the challenge's own list: one photograph twice
    records = [_rec("isic2020:images/a.jpg", 0, "patient:P1"), _rec("isic2020:images/b.jpg", 0, "patient:P1")]
    assert [r.key for r in dedupe(records, dup)] == ["isic2020:images/a.jpg"]  # a patient is not a lesion


def test_duplicates_keyed_by_image_id(ham_dir: Path) -> None:
    (ham_dir / "same_image_as.csv").write_text("image_id,same_image_as\nISIC_0000001,isic2017:images/ISIC_1.jpg\n")
    dup = Duplicates.from_files(find_manifests([ham_dir]))
    # the folder is "ham", but the official files key their images "ham10000:<image_id>", so the list does too
    assert dup.of("ham10000:ISIC_0000001") == {"isic2017:images/ISIC_1.jpg"}
    assert dup.of("isic2017:images/ISIC_1.jpg") == {"ham10000:ISIC_0000001"}
    assert len(load_records(ham_dir)) == 7  # the list beside the official files is no labels CSV


def test_duplicates_need_an_id_column(tmp_path: Path) -> None:
    (tmp_path / "same_image_as.csv").write_text("name,same_image_as\nx,other:y\n")
    with pytest.raises(DataError, match="path or image_id column"):
        Duplicates.from_files(find_manifests([tmp_path]))


def test_find_manifests_lists_every_duplicates_list_beside_the_data(tmp_path: Path, isic2017_dir: Path) -> None:
    plain = _labels_folder(tmp_path / "plain", "path,label", ["a.jpg,benign"])
    (plain / "manifest.csv").write_text("path,label\na.jpg,benign\n")  # no same_image_as column: not a list
    (isic2017_dir / "same_image_as.csv").write_text("image_id,same_image_as\n")
    (isic2017_dir / "manifest.csv").write_text("path,same_image_as\n")
    expected = [isic2017_dir / name for name in ("manifest.csv", "labels.csv", "same_image_as.csv")]
    assert find_manifests([isic2017_dir, plain]) == expected
    assert find_manifests([isic2017_dir / "labels.csv"]) == expected  # beside a CSV given, too
    assert find_manifests([plain / "labels.csv", plain]) == []


def test_drop_same_images_across_labels_csvs(isic2017_dir: Path) -> None:
    dup = Duplicates.from_files(find_manifests([isic2017_dir]))
    pool = load_records(isic2017_dir, "train") + load_records(isic2017_dir, "val")
    test = load_records(isic2017_dir, "test")
    # ISIC_0000000 is the same photograph as the test image; the other two stay
    kept = [r.key for r in drop_same_images(pool, test, dup)]
    assert kept == ["isic2017:images/ISIC_0000001.jpg", "isic2017:images/ISIC_0000002.jpg"]


def test_split_is_grouped_stratified_and_deterministic() -> None:
    records = [_rec(f"k{i}", int(i % 4 == 0), group=f"lesion{i // 2}") for i in range(200)]
    train, val = split_records(records, 0.25, seed=3)
    assert len(train) + len(val) == 200
    assert {r.group for r in train}.isdisjoint({r.group for r in val})
    assert 0.15 < sum(r.label for r in val) / len(val) < 0.35
    again = split_records(records, 0.25, seed=3)
    assert [r.key for r in again[1]] == [r.key for r in val]
    assert [r.key for r in split_records(records, 0.25, seed=4)[1]] != [r.key for r in val]


def test_split_keeps_duplicate_photographs_together() -> None:
    dup = Duplicates()
    records = [_rec(f"k{i}", i % 2) for i in range(60)]
    for i in range(0, 60, 2):
        dup.add(f"k{i}", f"k{i + 1}")
    _, val = split_records(records, 0.3, seed=0, dup=dup)
    val_keys = {r.key for r in val}
    for i in range(0, 60, 2):
        assert (f"k{i}" in val_keys) == (f"k{i + 1}" in val_keys)


@pytest.mark.data
def test_real_datasets_read_as_documented(shared_data: Path) -> None:
    ham_train = load_records(shared_data / "ham10000", "train")
    ham_test = load_records(shared_data / "ham10000", "test")
    kaggle_test = load_records(shared_data / "isic-mvb", "test")
    assert (len(ham_train), sum(r.label for r in ham_train)) == (
        10015,
        1954,
    )  # v2 of ../shared/data: every HAM10000 image
    assert (len(ham_test), sum(r.label for r in ham_test)) == (1512, 307)
    assert (len(kaggle_test), sum(r.label for r in kaggle_test)) == (660, 300)
    assert Counter(r.meta["dx"] for r in ham_test) == {"nv": 909, "bkl": 217, "mel": 171, "bcc": 93, "df": 44,
                                                       "akiec": 43, "vasc": 35}  # fmt: skip
    dup = Duplicates.from_files(find_manifests([shared_data / "isic-mvb"]))
    kaggle_train = load_records(shared_data / "isic-mvb", "train")
    clean = drop_same_images(ham_train + kaggle_train, ham_test + kaggle_test, dup)
    banned = {k for r in kaggle_test for k in dup.of(r.key)}
    assert banned and not banned & {r.key for r in clean}
    for (name, split), (counts, dx) in _README_SPLITS.items():
        records = load_records(shared_data / name, split)
        assert (len(records) - sum(r.label for r in records), sum(r.label for r in records)) == counts, (name, split)
        assert dx is None or Counter(r.meta["dx"] for r in records) == dx, (name, split)


# ../shared/data/README.md (v2): (benign, malignant) and diagnoses per split
_README_SPLITS = {
    ("isic2017", "train"): ((1741, 403), {"nv": 1487, "bkl": 254, "mel": 403}),
    ("isic2017", "val"): ((120, 30), {"nv": 78, "bkl": 42, "mel": 30}),
    ("isic2017", "test"): ((483, 117), {"nv": 393, "bkl": 90, "mel": 117}),
    ("isic2020", "train"): ((2502, 467), None),
    ("isic2020", "test"): ((674, 117), None),
}


@pytest.mark.data
def test_real_isic2017_and_isic2020_groups_and_meta(shared_data: Path) -> None:
    isic2017 = load_records(shared_data / "isic2017")
    assert sum(r.group.startswith("lesion:") for r in isic2017) == 819  # the MSK-4 images with a lesion id
    extra = [r for r in isic2017 if r.meta["subsource"] == "isic2018_task1"]
    assert (len(extra), sum(r.label for r in extra), {r.split for r in extra}) == (144, 29, {"train"})
    isic2020 = load_records(shared_data / "isic2020")
    patients = {split: {r.group for r in isic2020 if r.split == split} for split in ("train", "test")}
    assert (len(patients["train"]), len(patients["test"])) == (672, 168)
    assert not patients["train"] & patients["test"] and all(g.startswith("patient:") for g in patients["train"])
    # the words of the challenge's diagnosis: unknown 3,033, melanoma 584, nevus 138, seb. keratosis 3, lentigo NOS 2
    assert Counter(r.meta.get("dx") for r in isic2020) == {None: 3033, "mel": 584, "nv": 138, "bkl": 5}
    by_copy = Counter((r.meta["subsource"], r.label) for r in isic2020)
    assert by_copy == {("vatssavvya", 1): 584, ("vatssavvya", 0): 560, ("toregore", 0): 2616}


@pytest.mark.data
def test_real_duplicates_of_test_images_as_documented(shared_data: Path) -> None:
    names = ("ham10000", "isic-mvb", "isic2017", "isic2020")
    splits = {"ham10000": ("train",), "isic-mvb": ("train",), "isic2017": ("train", "val"), "isic2020": ("train",)}
    pool = [r for name in names for split in splits[name] for r in load_records(shared_data / name, split)]
    tests = [r for name in names for r in load_records(shared_data / name, "test")]
    manifests = find_manifests([shared_data / name for name in names])
    assert [m.parent.name for m in manifests] == list(names)
    dup = Duplicates.from_files(manifests)
    test_keys = {r.key for r in tests}

    def hits_a_test_image(r: Record) -> bool:
        return r.key in test_keys or bool(dup.of(r.key) & test_keys)

    # README "Duplicates": the same photograph as an image of some test split, by direct same_image_as links
    assert Counter((source_of(r), r.split) for r in pool if hits_a_test_image(r)) == {
        ("ham10000", "train"): 547, ("isic-mvb", "train"): 148, ("isic2017", "train"): 64,
        ("isic2017", "val"): 8, ("isic2020", "train"): 4,
    }  # fmt: skip
    clean = drop_same_images(pool, tests, dup)
    assert not any(hits_a_test_image(r) for r in clean)
    # the lists are pairwise matches, not closed under "same as": drop_same_images also drops the 19 images
    # (17 ham10000, 2 isic-mvb) that are the same as an image that is the same as a test image
    assert len(pool) - len(clean) == 771 + 19
