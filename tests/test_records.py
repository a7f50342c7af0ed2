"""Record readers for every layout, duplicates and grouped splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from skinscan.core.errors import DataError
from skinscan.training.records import (
    Duplicates,
    Record,
    SkippedRecords,
    dedupe,
    drop_same_images,
    find_manifests,
    list_splits,
    load_records,
    split_records,
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
    assert (len(ham_train), sum(r.label for r in ham_train)) == (10015, 1954)  # v2 of ../shared/data: every HAM10000 image
    assert (len(ham_test), sum(r.label for r in ham_test)) == (1512, 307)
    assert (len(kaggle_test), sum(r.label for r in kaggle_test)) == (660, 300)
    assert Counter(r.meta["dx"] for r in ham_test) == {"nv": 909, "bkl": 217, "mel": 171, "bcc": 93, "df": 44,
                                                       "akiec": 43, "vasc": 35}  # fmt: skip
    dup = Duplicates.from_files(find_manifests([shared_data / "isic-mvb"]))
    kaggle_train = load_records(shared_data / "isic-mvb", "train")
    clean = drop_same_images(ham_train + kaggle_train, ham_test + kaggle_test, dup)
    banned = {k for r in kaggle_test for k in dup.of(r.key)}
    assert banned and not banned & {r.key for r in clean}
