// Agent inbox: customer and team conversation lists, the selected conversation, and the side
// panel (visitor details, the colleague of a 1:1 chat, or the group's settings and members).
//
// One module per part of the screen, around one store (store.js) that holds the state and emits
// its changes; server frames reach the module that owns them through frames.js. This module
// only loads the parts and then opens the connection, once every frame type has its handler.
import './notifications.js'; // toast, desktop notifications, chime, reminders
import './conversations.js'; // the list, tabs, selection; conversation frames
import './messages.js'; // the selected conversation's messages; message frames
import './header.js'; // the selected conversation's header and its actions
import './actions.js'; // snooze and un-snooze
import './schedule.js'; // scheduled replies
import './composer.js'; // writing: text, mentions, canned responses, files, voice, stickers
import './team.js'; // new chats and groups, the group panel
import './visitor.js'; // the visitor panel, suggested answers, AI draft, blocking
import './attributes.js'; // custom attributes, merging contacts, the list's attribute filter
import './layout.js'; // the side panel as a drawer on narrow screens
import './transfer.js'; // transfers, invites and offers
import './queue.js'; // the workgroups' waiting visitors
import './views.js'; // the list's views and live counts, labels
import './list_export.js'; // exporting the list's view (a worker's job, with progress)
import './shortcuts.js'; // keyboard shortcuts, and the ? list of them
import './search.js'; // message search
import './convsearch.js'; // conversation search by customer or text, with filters
import './status.js'; // the agent's status and load
import './language.js'; // the language switch
import { connect } from './connection.js';

connect();
