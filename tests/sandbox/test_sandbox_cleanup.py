"""Clean-up of a job's directory (``inside/cleanup.remove_tree``): whatever the program left."""
import os

from diffucoder.sandbox.inside.cleanup import remove_tree


def test_nothing_there_is_nothing_to_do(tmp_path):
    remove_tree(str(tmp_path / "job"))
    assert list(tmp_path.iterdir()) == []


def test_an_empty_directory_a_file_and_a_link_are_removed(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "file").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    os.symlink(outside, tmp_path / "link")
    for name in ("job", "file", "link"):
        remove_tree(str(tmp_path / name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]
    assert (outside / "keep").read_text() == "precious"   # the link was not followed


def test_a_tree_the_program_locked_is_removed(tmp_path):
    job = tmp_path / "job"
    deep = job / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "data").write_text("x" * 100)
    os.symlink("/usr", job / "a" / "usr")
    os.chmod(deep, 0)
    os.chmod(job / "a", 0o100)
    remove_tree(str(job))
    assert not job.exists()
    assert os.path.isdir("/usr/share")
