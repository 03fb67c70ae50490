// psa:billing/stripe: this example host does not call Stripe. Every
// operation is refused with the typed `denied` error, as the Rust host does
// without STRIPE_SECRET_KEY; webhooks (what this example serves) never need it.
const denied = () => {
  throw { payload: { tag: 'denied', val: 'the Node.js example host does not supply the Stripe capability' } };
};

export const retrieveEvent = denied;
export const retrieveThinEvent = denied;
export const retrievePaymentIntent = denied;
export const retrieveCharge = denied;
export const retrieveBalanceTransaction = denied;
export const retrieveInvoice = denied;
export const retrieveSubscription = denied;
export const retrieveAccount = denied;
export const createPaymentIntent = denied;
export const createRefund = denied;
export const createTransfer = denied;
export const updateSubscriptionQuantity = denied;
export const createAccount = denied;
export const createAccountLink = denied;
export const createCustomer = denied;
export const updateCustomer = denied;
export const retrieveCustomer = denied;
export const retrievePaymentMethod = denied;
export const searchCustomers = denied;
export const attachPaymentMethod = denied;
export const createSubscription = denied;
export const updateSubscription = denied;
export const cancelSubscription = denied;
export const createCheckoutSession = denied;
export const createPortalSession = denied;
export const createInvoice = denied;
export const createInvoiceItem = denied;
export const advanceInvoice = denied;
