"""The review and merge queue: an agent's new commits reviewed, merged into a target branch
one at a time per target after the checks pass, and every worktree brought onto the new head.

``rules`` (pure: what to do next), ``review`` (pure: the tasks sent and the verdict read),
``git`` (git as a bounded subprocess), ``attempt`` (one merge in a scratch worktree),
``merger`` (the watchdog's thread that runs the merges), ``worktree`` (an agent's side:
its review requests and its worktree kept on the target). The item states are taskstate's;
the rows are queue/merges.py's.
"""
