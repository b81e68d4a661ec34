"""The service robot of robot and robot-first channels (KF-1, KB-4, KB-5).

A session on a ``robot`` or ``workgroup`` channel starts with status ``robot``. Each visitor
message is answered by :func:`answer` in a Celery worker (``kefu.tasks.robot_answer_task``):

1. The channel's public knowledge bases are searched (:func:`kbase.search.search`, hybrid when
   embeddings are installed). The best hit's *confidence* is the larger of its search score
   (cosine similarity plus keyword bonus, hybrid mode) and the share of the question's terms
   found in it (question/title terms count fully, answer/body terms half) — 0 … 1.
2. With an LLM provider configured (:mod:`kbase.llm`), the model writes an answer from the top
   hits, streamed to the visitor as ``robot.stream`` frames, citing its sources; it may say the
   hits do not cover the question. Without one — or when every provider fails — the robot
   replies with the best FAQ answer or an article excerpt, when the confidence reaches the
   channel's ``min_confidence``.
3. Otherwise the turn is a *miss*: the robot says it does not know, the question is collected as
   a :class:`kbase.models.RobotQuestion` for admins, and on a robot-first channel the session is
   handed over after ``handover_after_misses`` misses in a row.

Robot answers are ``im`` messages from the robot sender whose ``meta["robot"]`` carries
``{"reply_to": seq, "question", "answered": bool, "confidence", "sources": [{"type", "id",
"title", "url"}], "llm": provider name | null, "feedback": null | "helpful" | "not_helpful"}``
(docs/protocol.md §2.5). The visitor can rate an answer (:func:`feedback`); "not helpful"
collects the question too.

A hand-over (:func:`handover`: the visitor's button or phrase, or the misses) moves the session
to the workgroup's queue; the agent who takes it joins the same conversation, so the whole
transcript — questions, robot answers and their sources — is what they see first.

Modules: :mod:`~kefu.robot.persona` (name, greeting, widget info), :mod:`~kefu.robot.answers`
(the visitor's turn and the answer), :mod:`~kefu.robot.streaming` (``robot.stream`` frames),
:mod:`~kefu.robot.handover`, :mod:`~kefu.robot.feedback` (ratings; unanswered questions are
collected by :func:`kbase.services.robot_question_collect`) and :mod:`~kefu.robot.drafts` (LLM
drafts for agents). Import the module you need; this package re-exports nothing.
"""
