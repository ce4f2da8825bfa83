"""What a deploy does: the in-place release, blue-green, the canary, the colour
switch, rollback, provisioning, and the operator's side of ``bgdeploy deploy``."""
