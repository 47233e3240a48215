/**
 * Paddle: no sale notification by mail is known (sales arrive as webhooks), so mail from Paddle is
 * newsletters, receipts and payout notices: recognised, so it is not mistaken for another vendor's
 * sale or sent to review, and ignored.
 */
import { defineParser, sentFrom } from '../src/parse/define-parser';

export default defineParser({
  id: 'paddle',
  label: 'Paddle',
  matches: sentFrom('paddle.com'),
  parse: (n) => ({ kind: 'ignore', reason: `Paddle mail, which is never a sale notification: "${n.subject}"` }),
});
