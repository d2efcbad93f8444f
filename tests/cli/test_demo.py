"""README's main job, run as users run it: a process from spawn to exit."""
import subprocess
import sys


def test_the_main_job_mirrors_replicates_and_verifies_clean():
    run = subprocess.run([sys.executable, "-m", "dtcore.cli.demo", "--files", "60"],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "link cut" in out
    assert "Verify after replication: 0 differences" in out
    assert "Verify after the remirror: 0 differences" in out
    assert "status Ready" in out
    assert "Replicating plain file changes (watched with" in out
    assert "events became" in out
