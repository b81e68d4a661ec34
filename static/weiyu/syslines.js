// Automatic lines ("Carol is now serving you.") rendered in the reader's language from the code
// and parameters the server stores with them (im/syslines.py, docs/protocol.md §2.1). The codes
// and texts below are the server's: a test (tests/kefu/test_syslines.py) keeps them in step, and
// the texts are translated in djangojs.po. A message without a code, or with a code this page
// does not know (a newer server), shows its `content`, the line in the tenant's language.
import { gettext, interpolate } from './i18n.js';

const LINES = {
  'group.created': () => gettext('%(actor)s created the group %(title)s'),
  'group.renamed': () => gettext('%(actor)s renamed the group to %(title)s'),
  'group.announcement': () => gettext('%(actor)s updated the announcement: %(text)s'),
  'group.announcement_removed': () => gettext('%(actor)s removed the announcement'),
  'group.avatar': () => gettext('%(actor)s changed the group picture'),
  'group.all_muted': () => gettext('%(actor)s muted everyone'),
  'group.all_unmuted': () => gettext('%(actor)s unmuted everyone'),
  'group.dissolved': () => gettext('%(actor)s dissolved the group'),
  'group.invited': () => gettext('%(actor)s invited %(names)s'),
  'group.left': () => gettext('%(name)s left the group'),
  'group.removed': () => gettext('%(actor)s removed %(name)s'),
  'group.admin': () => gettext('%(actor)s made %(name)s an admin'),
  'group.member': () => gettext('%(actor)s made %(name)s a member'),
  'group.muted': () => gettext('%(actor)s muted %(name)s for %(minutes)d minutes'),
  'group.unmuted': () => gettext('%(actor)s unmuted %(name)s'),
  'group.owner': () => gettext('%(actor)s made %(name)s the group owner'),
  'kefu.assigned': () => gettext('%(agent)s is now serving you.'),
  'kefu.joined': () => gettext('%(agent)s joined the conversation.'),
  'kefu.transferred': () => gettext('You are being transferred to %(workgroup)s. Please wait a moment.'),
  'kefu.requeued': () => gettext('Sorry for the wait. We are connecting you to another colleague.'),
  'kefu.agent_left': () =>
    gettext('%(agent)s had to leave. You are back in the queue for the next colleague available.'),
  'kefu.handover': () => gettext('Connecting you to a colleague…'),
  'kefu.overflow_leave_message': () =>
    gettext('Sorry for the wait: all our agents are busy. Please leave a message and we will get back to you.'),
  'kefu.idle_closed': () =>
    gettext('This conversation was closed because there has been no reply for a while. Write again any time.'),
  'kefu.ended': () => gettext('The conversation has ended.'),
  'kefu.snoozed': () => gettext('%(agent)s snoozed the conversation until %(until)s.'),
  'kefu.snoozed_until_reply': () => gettext('%(agent)s snoozed the conversation until the customer replies.'),
  'kefu.snooze_ended': () => gettext('The snooze ended: the conversation is back.'),
  'kefu.snooze_ended_reply': () => gettext('The customer replied: the conversation is back.'),
  'kefu.ticket_split': () => gettext('%(agent)s split a message off into ticket #%(number)s.'),
  'kefu.merged_in': () => gettext('%(agent)s merged conversation #%(id)s (%(time)s) into this one.'),
  'kefu.merged_away': () => gettext('%(agent)s merged this conversation into #%(id)s.'),
};

/** The text a reader of this page reads for message `m`: its line in the page's language, else its content. */
export function lineText(m) {
  const line = m && m.code && Object.prototype.hasOwnProperty.call(LINES, m.code) ? LINES[m.code] : null;
  if (!line) return (m && m.content) || '';
  const params = {};
  for (const [key, value] of Object.entries(m.params || {})) {
    params[key] = Array.isArray(value) ? value.join(gettext(', ')) : value;
  }
  const fmt = line().replace(/%\((\w+)\)d/g, '%($1)s');
  const names = fmt.match(/%\((\w+)\)s/g) || [];
  if (names.some((n) => !(n.slice(2, -2) in params))) return m.content || '';
  return interpolate(fmt, params, true);
}
