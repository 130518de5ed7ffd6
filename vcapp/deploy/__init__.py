"""What happens to an app between a push and its containers: the pipeline (pipeline.py:
receive -> build here or on another machine -> record the release -> wait), the remote build's
both halves (remote_build.py), shared build stacks (stackshare.py), release-phase and one-off
runs (release_phase.py; on a terminal, console.py), `vcapp exec` (instance_exec.py) and an app's
destruction (destroy.py)."""
