"""The embedded testbed (METHOD.md section 7): multi-step problems from a hidden computation graph
(:mod:`.problems`) and a scripted teacher that writes long thinking traces about them (:mod:`.teacher`)."""
