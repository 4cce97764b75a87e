"""The embedded testbed (METHOD.md section 7): multi-step problems from a hidden computation graph
(:mod:`.problems`), a scripted teacher that writes long thinking traces about them in one of three
settings (:mod:`.teacher`), and a reference predictor of the next signal that knows the teacher's rules
(:mod:`.reference`, reading questions and steps back with :mod:`.reading`)."""
