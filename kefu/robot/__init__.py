"""The service robot of robot and robot-first channels (KF-1, KB-4, KB-5).

A session on a ``robot`` or ``workgroup`` channel starts with status ``robot``. Each visitor
message is answered by :func:`answer` in a Celery worker (``kefu.tasks.robot_answer_task``):

1. The channel's public knowledge bases are searched (:func:`kbase.search.search`, hybrid when
   embeddings are installed) and :mod:`~kefu.robot.decision` decides: *answer* with the best hit,
   offer the top three as "Did you mean" *choices*, or *decline* — by the question's language,
   the hits re-ranked by their pieces, the best hit's score and its lead over the second (or the
   share of the question's words, by keywords alone). ``confidence`` (0 … 1) is that score.
2. With an LLM provider configured (:mod:`kbase.llm`), the model writes an answer from the top
   hits, streamed to the visitor as ``robot.stream`` frames, citing its sources; it may say the
   hits do not cover the question. Without one — or when every provider fails — the robot
   replies with the decision: the best FAQ answer or an article excerpt, or the choices.
3. A decline is a *miss*: the robot says it does not know, the question is collected as
   a :class:`kbase.models.RobotQuestion` for admins, and on a robot-first channel the session is
   handed over after ``handover_after_misses`` misses in a row — at once for a question in a
   language the robot does not read. Choices are no miss.

Robot answers are ``im`` messages from the robot sender whose ``meta["robot"]`` carries
``{"reply_to": seq, "question", "answered": bool, "confidence", "sources": [{"type", "id",
"title", "url"}], "suggestions": [{"type", "id", "title"}], "declined": null | "no_match" |
"language", "llm": provider name | null, "feedback": null | "helpful" | "not_helpful"}``
(docs/protocol.md §2.5). The visitor can rate an answer (:func:`feedback`); "not helpful"
collects the question too.

A hand-over (:func:`handover`: the visitor's button or phrase, or the misses) moves the session
to the workgroup's queue; the agent who takes it joins the same conversation, so the whole
transcript — questions, robot answers and their sources — is what they see first.

Modules: :mod:`~kefu.robot.persona` (name, greeting, widget info), :mod:`~kefu.robot.decision`
(answer, choices or decline), :mod:`~kefu.robot.answers` (the visitor's turn and the answer),
:mod:`~kefu.robot.streaming` (``robot.stream`` frames), :mod:`~kefu.robot.handover`, :mod:`~kefu.robot.feedback` (ratings; unanswered questions are
collected by :func:`kbase.services.robot_question_collect`) and :mod:`~kefu.robot.drafts` (LLM
drafts for agents). Import the module you need; this package re-exports nothing.
"""
